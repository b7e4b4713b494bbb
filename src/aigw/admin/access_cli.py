"""`aigw users|service-principals|groups|grants`: who exists, who belongs where, who may use what
(endpoints, and the agent API's hosted tools: MCP connections and Python functions).

Adding is idempotent (adding a member twice, or granting again, succeeds and says so); removing what
is not there is an error, as `aigw tokens revoke` does. Running gateways see every change within
their refresh period (`server.token_refresh_seconds`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import click

from aigw.admin.cli_support import echo_rows, json_option, store_session, when
from aigw.store import USERS_GROUP, PrincipalInfo, PrincipalKind, Store, SubjectKind

OpenStore = Callable[[], Store]
_PERMISSION = click.Choice(["CAN_QUERY", "CAN_MANAGE"], case_sensitive=False)


def make_principal_group(open_store: OpenStore, kind: PrincipalKind) -> click.Group:
    """`aigw users ...` or `aigw service-principals ...`: the same commands for either kind."""
    what = "user" if kind == "user" else "service principal"

    token_flag = " --service-principal" if kind == "service_principal" else ""

    @click.group(
        name="users" if kind == "user" else "service-principals",
        help=f"Create, list and delete {what}s (the principals tokens belong to).",
    )
    def principals() -> None:
        pass

    @principals.command(
        name="create",
        help=f"Create a {what}. Give it a token with `aigw tokens create --name N --principal NAME{token_flag}`.",
    )
    @click.argument("name")
    @click.option("--admin", is_flag=True, help="May query and manage every endpoint.")
    def create(name: str, admin: bool) -> None:
        with store_session(open_store) as store:
            store.create_principal(name, kind, is_admin=admin)
        click.echo(f"Created {what} {name!r}{' (admin)' if admin else ''}.", err=True)

    @principals.command(name="list", help=f"List {what}s.")
    @json_option
    def list_(as_json: bool) -> None:
        with store_session(open_store) as store:
            infos = store.access.list_principals(kind)
        echo_rows(infos, as_json, ("NAME", "ADMIN", "CREATED"), _principal_row, f"No {what}s.")

    @principals.command(
        name="delete",
        help=f"Delete a {what} with its tokens, group memberships and grants. Running gateways stop "
        "accepting its tokens within seconds.",
    )
    @click.argument("name")
    def delete(name: str) -> None:
        with store_session(open_store) as store:
            active = store.access.delete_principal(name, kind)
        revoked = f" and revoked its {active} active token{'s' if active != 1 else ''}" if active else ""
        click.echo(f"Deleted {what} {name!r}{revoked}.", err=True)

    return principals


def make_groups_group(open_store: OpenStore) -> click.Group:
    @click.group(name="groups")
    def groups() -> None:
        """Create groups and manage their members. Every principal is implicitly in `users`."""

    @groups.command(name="create")
    @click.argument("name")
    def create(name: str) -> None:
        """Create an empty group."""
        with store_session(open_store) as store:
            store.access.create_group(name)
        click.echo(f"Created group {name!r}.", err=True)

    @groups.command(name="list")
    @json_option
    def list_(as_json: bool) -> None:
        """List groups with their number of members."""
        with store_session(open_store) as store:
            infos = store.access.list_groups()
        echo_rows(
            infos,
            as_json,
            ("NAME", "MEMBERS", "CREATED"),
            lambda g: (g.name, f"{g.member_count}{' (all)' if g.name == USERS_GROUP else ''}", when(g.created_at)),
            "No groups.",
        )

    @groups.command(name="delete")
    @click.argument("name")
    def delete(name: str) -> None:
        """Delete a group with its memberships and grants (its members stay)."""
        with store_session(open_store) as store:
            store.access.delete_group(name)
        click.echo(f"Deleted group {name!r}.", err=True)

    @groups.command(name="add-member")
    @click.argument("group")
    @click.argument("principal")
    def add_member(group: str, principal: str) -> None:
        """Add a user or service principal to a group."""
        with store_session(open_store) as store:
            added = store.access.add_member(group, principal)
        if added:
            click.echo(f"Added {principal!r} to {group!r}.", err=True)
        else:
            click.echo(f"{principal!r} is already a member of {group!r}.", err=True)

    @groups.command(name="remove-member")
    @click.argument("group")
    @click.argument("principal")
    def remove_member(group: str, principal: str) -> None:
        """Remove a user or service principal from a group."""
        with store_session(open_store) as store:
            removed = store.access.remove_member(group, principal)
        if not removed:
            raise click.ClickException(f"{principal!r} is not a member of {group!r}")
        click.echo(f"Removed {principal!r} from {group!r}.", err=True)

    @groups.command(name="members")
    @click.argument("group")
    @json_option
    def members(group: str, as_json: bool) -> None:
        """List a group's members (for `users`: every principal)."""
        with store_session(open_store) as store:
            infos = store.access.members(group)
        echo_rows(infos, as_json, ("NAME", "KIND", "ADMIN"), _member_row, f"Group {group!r} has no members.")

    return groups


def make_grants_group(
    open_store: OpenStore, known_endpoints: Callable[[], Collection[str]] | None = None
) -> click.Group:
    """`known_endpoints` (the configured endpoint names) only serves a warning on a likely typo:
    grants may name endpoints the configuration does not have yet."""

    @click.group(name="grants")
    def grants() -> None:
        """Give users, service principals or groups CAN_QUERY or CAN_MANAGE on an endpoint, or the
        use (CAN_QUERY) of a hosted tool of the agent API: an MCP connection (--connection NAME) or a
        Python function (--function NAME).

        An endpoint or hosted tool without grants is for admins only. CAN_MANAGE implies CAN_QUERY.
        Grant to the group `users` to open one to every token holder."""

    @grants.command(name="add")
    @click.argument("endpoint", required=False)
    @_resource_options
    @_subject_options
    @click.option(
        "--permission", type=_PERMISSION, default="CAN_QUERY", show_default=True, metavar="CAN_QUERY|CAN_MANAGE"
    )
    def add(
        endpoint: str | None, connection: str | None, function: str | None,
        user: str | None, service_principal: str | None, group: str | None, permission: str,
    ) -> None:  # fmt: skip
        """Grant a permission on ENDPOINT (or a connection or function); granting again replaces the
        subject's permission."""
        resource_kind, resource = _resource(endpoint, connection, function, required=True)
        kind, name = _subject(user, service_principal, group)
        with store_session(open_store) as store:
            store.access.grant(resource, kind, name, permission, resource_kind)  # type: ignore[arg-type]
        click.echo(f"Granted {permission} on {_describe(resource_kind, resource)} to {_KIND_NAMES[kind]} {name!r}.", err=True)
        if resource_kind == "endpoint" and known_endpoints is not None and resource not in known_endpoints():
            click.echo(
                f"Note: {resource!r} is not an endpoint of this configuration (AIGW_CONFIG); "
                "the grant applies wherever an endpoint has that name.",
                err=True,
            )

    @grants.command(name="remove")
    @click.argument("endpoint", required=False)
    @_resource_options
    @_subject_options
    @click.option(
        "--permission", type=_PERMISSION, default=None, metavar="CAN_QUERY|CAN_MANAGE", help="Only if it is this one."
    )
    def remove(
        endpoint: str | None, connection: str | None, function: str | None,
        user: str | None, service_principal: str | None, group: str | None, permission: str | None,
    ) -> None:  # fmt: skip
        """Remove a subject's grant on ENDPOINT (or a connection or function)."""
        resource_kind, resource = _resource(endpoint, connection, function, required=True)
        kind, name = _subject(user, service_principal, group)
        with store_session(open_store) as store:
            removed = store.access.revoke(resource, kind, name, permission, resource_kind)  # type: ignore[arg-type]
        where = _describe(resource_kind, resource)
        if not removed:
            raise click.ClickException(f"{_KIND_NAMES[kind]} {name!r} has no {permission or 'grant'} on {where}")
        click.echo(f"Removed the grant on {where} from {_KIND_NAMES[kind]} {name!r}.", err=True)

    @grants.command(name="list")
    @click.argument("endpoint", required=False)
    @_resource_options
    @json_option
    def list_(endpoint: str | None, connection: str | None, function: str | None, as_json: bool) -> None:
        """List grants: all of them, or those on ENDPOINT (or a connection or function)."""
        resource_kind, resource = _resource(endpoint, connection, function, required=False)
        with store_session(open_store) as store:
            infos = store.access.list_grants(resource, resource_kind)  # type: ignore[arg-type]
        echo_rows(
            infos,
            as_json,
            ("RESOURCE", "TYPE", "NAME", "PERMISSION", "GRANTED"),
            lambda g: (_label(g.resource_kind, g.endpoint), g.subject_kind, g.subject_name, g.permission, when(g.created_at)),
            _no_grants(resource_kind, resource),
        )

    return grants


def _resource_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--connection", metavar="NAME", help="An MCP connection (agent.connections) instead of an endpoint."),
            click.option("--function", metavar="NAME", help="A Python function (agent.functions) instead of an endpoint."),
        ]
    ):
        command = option(command)
    return command


def _resource(
    endpoint: str | None, connection: str | None, function: str | None, *, required: bool
) -> tuple[str | None, str | None]:
    """(resource kind, name) from ENDPOINT, --connection or --function: at most one (exactly one
    when `required`); (None, None) when none is given."""
    given = [(k, n) for k, n in (("endpoint", endpoint), ("connection", connection), ("function", function)) if n is not None]
    if len(given) > 1 or (required and not given):
        raise click.UsageError("give exactly one of ENDPOINT, --connection NAME or --function NAME")
    return given[0] if given else (None, None)


def _no_grants(kind: str | None, name: str | None) -> str:
    if kind is None or name is None:
        return "No grants."
    return f"No grants on {_describe(kind, name)}: only admins may {'query' if kind == 'endpoint' else 'use'} it."


def _describe(kind: str, name: str | None) -> str:
    return f"{name!r}" if kind == "endpoint" else f"{kind} {name!r}"


def _label(kind: str, name: str) -> str:
    """A resource in the grants table: endpoints by name, hosted tools with their kind."""
    return name if kind == "endpoint" else f"{kind}:{name}"


_KIND_NAMES = {"user": "user", "service_principal": "service principal", "group": "group"}


def _subject_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        [
            click.option("--user", metavar="NAME", help="A user."),
            click.option("--service-principal", "service_principal", metavar="NAME", help="A service principal."),
            click.option("--group", metavar="NAME", help="A group (`users`: every principal)."),
        ]
    ):
        command = option(command)
    return command


def _subject(user: str | None, service_principal: str | None, group: str | None) -> tuple[SubjectKind, str]:
    options = (("user", user), ("service_principal", service_principal), ("group", group))
    given = [(kind, name) for kind, name in options if name is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --user, --service-principal or --group")
    return given[0]  # type: ignore[return-value]


def _principal_row(principal: PrincipalInfo) -> tuple[str, ...]:
    return (principal.name, _yes(principal.is_admin), when(principal.created_at))


def _member_row(principal: PrincipalInfo) -> tuple[str, ...]:
    return (principal.name, principal.kind, _yes(principal.is_admin))


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"
