"""Who may do what: principals (listing, deleting), groups, memberships and grants (on endpoints
and on the agent API's hosted tools).

`AccessStore` runs over the Store's own transaction helpers (`store.access`), so it shares the
Store's engine, its SQLite write locking and its thread safety. Like the Store, it is for the CLI, the
admin API and the periodic refresh of the in-memory caches, never for the per-request path.

The built-in group `users` is a row (grants name it by id) whose membership is implicit: every
principal is in it, so it has no membership rows and cannot be deleted or edited.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError

from aigw.store.errors import AlreadyExists, NotFound, StoreError
from aigw.store.records import (
    PERMISSIONS,
    RESOURCE_KINDS,
    SUBJECT_KINDS,
    USERS_GROUP,
    AccessSnapshot,
    GrantInfo,
    GroupInfo,
    Permission,
    PrincipalInfo,
    PrincipalKind,
    ResourceKind,
    SubjectKind,
)
from aigw.store.schema import NAME_LENGTH, grants, group_members, groups, principals, tokens

Transaction = Callable[[], AbstractContextManager[Connection]]

_KIND_NAMES = {"user": "user", "service_principal": "service principal", "group": "group"}


class AccessStore:
    def __init__(self, read: Transaction, write: Transaction) -> None:
        self._read = read
        self._write = write

    # -- principals ---------------------------------------------------------------------------------

    def list_principals(self, kind: PrincipalKind | None = None) -> list[PrincipalInfo]:
        query = select(principals).order_by(principals.c.name)
        if kind is not None:
            query = query.where(principals.c.kind == kind)
        with self._read() as conn:
            return [_principal(row) for row in conn.execute(query)]

    def delete_principal(self, name: str, kind: PrincipalKind) -> int:
        """Delete the principal with its tokens, memberships and grants; return how many of its tokens
        were still active. Refuses to delete the last admin, which would lock everyone out."""
        with self._write() as conn:
            principal = _find_principal(conn, name, kind)
            if principal.is_admin:
                admins = conn.execute(
                    select(func.count()).select_from(principals).where(principals.c.is_admin)
                ).scalar_one()
                if admins <= 1:
                    raise StoreError(f"{name!r} is the last admin; make another admin first")
            active = conn.execute(
                select(func.count())
                .select_from(tokens)
                .where(
                    tokens.c.principal_id == principal.id,
                    tokens.c.revoked_at.is_(None),
                    (tokens.c.expires_at.is_(None)) | (tokens.c.expires_at > _utcnow()),
                )
            ).scalar_one()
            # Tokens, memberships and grants go with it (ON DELETE CASCADE).
            conn.execute(delete(principals).where(principals.c.id == principal.id))
            return int(active)

    # -- groups -------------------------------------------------------------------------------------

    def create_group(self, name: str) -> GroupInfo:
        _check_name(name, "group")
        try:
            with self._write() as conn:
                values: dict[str, Any] = {"name": name, "created_at": _utcnow()}
                new_id = conn.execute(insert(groups).values(**values).returning(groups.c.id)).scalar_one()
        except IntegrityError as exc:
            raise AlreadyExists(f"group {name!r} already exists") from exc
        return GroupInfo(id=new_id, member_count=0, **values)

    def list_groups(self) -> list[GroupInfo]:
        counts = (
            select(group_members.c.group_id, func.count().label("n"))
            .group_by(group_members.c.group_id)
            .subquery()
        )
        query = (
            select(groups, func.coalesce(counts.c.n, 0).label("member_count"))
            .select_from(groups.outerjoin(counts, counts.c.group_id == groups.c.id))
            .order_by(groups.c.name)
        )
        with self._read() as conn:
            everyone = conn.execute(select(func.count()).select_from(principals)).scalar_one()
            return [
                GroupInfo(
                    id=row.id,
                    name=row.name,
                    created_at=row.created_at,
                    member_count=everyone if row.name == USERS_GROUP else row.member_count,
                )
                for row in conn.execute(query)
            ]

    def delete_group(self, name: str) -> None:
        """Delete the group with its memberships and grants."""
        _check_not_builtin(name, "deleted")
        with self._write() as conn:
            if not conn.execute(delete(groups).where(groups.c.name == name)).rowcount:
                raise NotFound(f"no group {name!r}")

    def add_member(self, group: str, principal: str) -> bool:
        """Add `principal` to `group`; False when it was a member already."""
        _check_not_builtin(group, "edited")
        try:
            with self._write() as conn:
                group_id = _find_group_id(conn, group)
                member = _find_principal(conn, principal, None)
                present = conn.execute(
                    select(group_members.c.group_id).where(
                        group_members.c.group_id == group_id, group_members.c.principal_id == member.id
                    )
                ).first()
                if present is not None:
                    return False
                conn.execute(
                    insert(group_members).values(
                        group_id=group_id, principal_id=member.id, created_at=_utcnow()
                    )
                )
                return True
        except IntegrityError:  # a concurrent add of the same member won the race
            return False

    def remove_member(self, group: str, principal: str) -> bool:
        """Remove `principal` from `group`; False when it was not a member."""
        _check_not_builtin(group, "edited")
        with self._write() as conn:
            group_id = _find_group_id(conn, group)
            member = _find_principal(conn, principal, None)
            result = conn.execute(
                delete(group_members).where(
                    group_members.c.group_id == group_id, group_members.c.principal_id == member.id
                )
            )
            return bool(result.rowcount)

    def members(self, group: str) -> list[PrincipalInfo]:
        """The group's members; for `users`, every principal."""
        with self._read() as conn:
            group_id = _find_group_id(conn, group)
            query = select(principals).order_by(principals.c.name)
            if group != USERS_GROUP:
                query = query.join(group_members, group_members.c.principal_id == principals.c.id).where(
                    group_members.c.group_id == group_id
                )
            return [_principal(row) for row in conn.execute(query)]

    # -- grants -------------------------------------------------------------------------------------

    def grant(
        self,
        endpoint: str,
        subject_kind: SubjectKind,
        subject: str,
        permission: Permission = "CAN_QUERY",
        resource_kind: ResourceKind = "endpoint",
    ) -> GrantInfo:
        """Give `subject` `permission` on `endpoint` (the name of a resource of `resource_kind`). A
        subject holds one permission per resource: granting again replaces it (so CAN_QUERY after
        CAN_MANAGE lowers it)."""
        _check_kind(resource_kind)
        _check_name(endpoint, resource_kind)
        if permission not in PERMISSIONS:
            raise ValueError(f"permission must be one of {', '.join(PERMISSIONS)}, got {permission!r}")
        # Two attempts: a concurrent first grant to the same subject makes one insert collide on the
        # unique index; the retry finds that row and updates it.
        for attempt in (1, 2):
            try:
                with self._write() as conn:
                    column, subject_id, name = _find_subject(conn, subject_kind, subject)
                    now = _utcnow()
                    where = (grants.c.resource_kind == resource_kind, grants.c.endpoint == endpoint, column == subject_id)
                    existing = conn.execute(select(grants.c.created_at).where(*where)).first()
                    if existing is None:
                        values = {"resource_kind": resource_kind, "endpoint": endpoint, column.name: subject_id, "permission": permission}
                        conn.execute(insert(grants).values(**values, created_at=now))
                    else:
                        conn.execute(update(grants).where(*where).values(permission=permission))
                        now = existing.created_at
                    return GrantInfo(
                        endpoint=endpoint,
                        subject_kind=subject_kind,
                        subject_id=subject_id,
                        subject_name=name,
                        permission=permission,
                        created_at=now,
                        resource_kind=resource_kind,
                    )
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def revoke(
        self,
        endpoint: str,
        subject_kind: SubjectKind,
        subject: str,
        permission: Permission | None = None,
        resource_kind: ResourceKind = "endpoint",
    ) -> bool:
        """Remove `subject`'s grant on `endpoint` (a resource of `resource_kind`; only if it is
        `permission`, when given). False if there was none."""
        _check_kind(resource_kind)
        with self._write() as conn:
            column, subject_id, _ = _find_subject(conn, subject_kind, subject)
            query = delete(grants).where(
                grants.c.resource_kind == resource_kind, grants.c.endpoint == endpoint, column == subject_id
            )
            if permission is not None:
                query = query.where(grants.c.permission == permission)
            return bool(conn.execute(query).rowcount)

    def list_grants(self, endpoint: str | None = None, resource_kind: ResourceKind | None = None) -> list[GrantInfo]:
        """Grants, of every resource or of those named `endpoint`, of every kind or of `resource_kind`."""
        if resource_kind is not None:
            _check_kind(resource_kind)
        with self._read() as conn:
            return _grants(conn, endpoint, resource_kind)

    # -- the in-memory caches' source -----------------------------------------------------------------

    def snapshot(self) -> AccessSnapshot:
        """Every explicit membership and every grant."""
        query = select(group_members.c.principal_id, groups.c.name).join(
            groups, groups.c.id == group_members.c.group_id
        )
        with self._read() as conn:
            by_principal: defaultdict[int, list[str]] = defaultdict(list)
            for row in conn.execute(query):
                by_principal[row.principal_id].append(row.name)
            return AccessSnapshot(groups_by_principal=dict(by_principal), grants=_grants(conn, None, None))


def _grants(conn: Connection, endpoint: str | None, resource_kind: str | None) -> list[GrantInfo]:
    common = (grants.c.resource_kind, grants.c.endpoint, grants.c.permission, grants.c.created_at)
    to_principals = select(
        *common,
        principals.c.kind.label("subject_kind"),
        principals.c.id.label("subject_id"),
        principals.c.name.label("subject_name"),
    ).join(principals, principals.c.id == grants.c.principal_id)
    to_groups = select(
        *common,
        literal("group").label("subject_kind"),
        groups.c.id.label("subject_id"),
        groups.c.name.label("subject_name"),
    ).join(groups, groups.c.id == grants.c.group_id)
    if endpoint is not None:
        to_principals = to_principals.where(grants.c.endpoint == endpoint)
        to_groups = to_groups.where(grants.c.endpoint == endpoint)
    if resource_kind is not None:
        to_principals = to_principals.where(grants.c.resource_kind == resource_kind)
        to_groups = to_groups.where(grants.c.resource_kind == resource_kind)
    both = union_all(to_principals, to_groups).subquery()
    query = select(both).order_by(both.c.resource_kind, both.c.endpoint, both.c.subject_kind, both.c.subject_name)
    return [
        GrantInfo(
            endpoint=row.endpoint,
            subject_kind=row.subject_kind,
            subject_id=row.subject_id,
            subject_name=row.subject_name,
            permission=row.permission,
            created_at=row.created_at,
            resource_kind=row.resource_kind,
        )
        for row in conn.execute(query)
    ]


def _find_subject(conn: Connection, kind: SubjectKind, name: str) -> tuple[Any, int, str]:
    """(the grants column naming the subject, the subject's id, its name)."""
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"grant subject kind must be one of {sorted(SUBJECT_KINDS)}, got {kind!r}")
    if kind == "group":
        return grants.c.group_id, _find_group_id(conn, name), name
    return grants.c.principal_id, _find_principal(conn, name, kind).id, name


def _find_principal(conn: Connection, name: str, kind: PrincipalKind | None) -> PrincipalInfo:
    row = conn.execute(select(principals).where(principals.c.name == name)).first()
    if row is None:
        raise NotFound(f"no {_KIND_NAMES[kind] if kind else 'principal'} {name!r}")
    principal = _principal(row)
    if kind is not None and principal.kind != kind:
        raise NotFound(f"{name!r} is a {_KIND_NAMES[principal.kind]}, not a {_KIND_NAMES[kind]}")
    return principal


def _find_group_id(conn: Connection, name: str) -> int:
    group_id = conn.execute(select(groups.c.id).where(groups.c.name == name)).scalar()
    if group_id is None:
        raise NotFound(f"no group {name!r}")
    return int(group_id)


def _check_not_builtin(group: str, what: str) -> None:
    if group == USERS_GROUP:
        raise StoreError(f"the built-in group {USERS_GROUP!r} holds every principal; it cannot be {what}")


def _check_kind(kind: str) -> None:
    if kind not in RESOURCE_KINDS:
        raise ValueError(f"grant resource kind must be one of {', '.join(RESOURCE_KINDS)}, got {kind!r}")


def _check_name(name: str, what: str) -> None:
    if not name or not name.strip() or len(name) > NAME_LENGTH:
        raise ValueError(f"{what} name must be 1-{NAME_LENGTH} characters and not blank")


def _principal(row: Row[Any]) -> PrincipalInfo:
    return PrincipalInfo(
        id=row.id, name=row.name, kind=row.kind, is_admin=bool(row.is_admin), created_at=row.created_at
    )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)

