"""Permission to use an endpoint or a hosted tool: CAN_QUERY and CAN_MANAGE grants, checked from memory.

Grants live in the store; the authenticator's periodic refresh reads them with the tokens and swaps a
fresh `GrantTable` into the gateway's `Permissions` in one assignment, so a check on the request path
is a dict lookup and a set test or two. The rules:

- admins may query and manage every endpoint;
- a grant names a principal or a group; CAN_MANAGE implies CAN_QUERY;
- every principal is in the built-in group `users`, so a grant to `users` opens an endpoint to all;
- an endpoint without a grant is for admins only, except `public` endpoints (the built-in demo
  endpoint, which calls no upstream), which every principal may query;
- the agent API's hosted tools (MCP connections, Python functions) are granted the same way, one
  grant per connection or function, CAN_QUERY being the permission to use it; without a grant a
  hosted tool is for admins only, whichever endpoint (the open demo one included) the request names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from aigw.config import Settings
from aigw.errors import ErrorKind, GatewayError
from aigw.store.records import GrantInfo

if TYPE_CHECKING:
    from aigw.policies.auth import Principal  # auth builds grant tables: import only for types


class EndpointGrants(msgspec.Struct, frozen=True, gc=False):
    """Who holds what on one endpoint. The query sets include the managers (CAN_MANAGE implies
    CAN_QUERY), so each check is one membership test per kind of subject."""

    query_principals: frozenset[int] = frozenset()
    query_groups: frozenset[str] = frozenset()
    manage_principals: frozenset[int] = frozenset()
    manage_groups: frozenset[str] = frozenset()


# (resource kind, name) -> its grants; never mutated once built.
GrantTable = dict[tuple[str, str], EndpointGrants]


def grant_table(grants: Iterable[GrantInfo]) -> GrantTable:
    """Index grants by resource (pure: the refresh builds it in a worker thread)."""
    sets: dict[tuple[str, str], tuple[set[int], set[str], set[int], set[str]]] = {}
    for grant in grants:
        key = (grant.resource_kind, grant.endpoint)
        query_p, query_g, manage_p, manage_g = sets.setdefault(key, (set(), set(), set(), set()))
        manage = grant.permission == "CAN_MANAGE"
        if grant.subject_kind == "group":  # groups by name: that is what a Principal carries
            query_g.add(grant.subject_name)
            if manage:
                manage_g.add(grant.subject_name)
        else:
            query_p.add(grant.subject_id)
            if manage:
                manage_p.add(grant.subject_id)
    return {
        key: EndpointGrants(frozenset(qp), frozenset(qg), frozenset(mp), frozenset(mg))
        for key, (qp, qg, mp, mg) in sets.items()
    }


def public_endpoints(settings: Settings, demo_name: str) -> frozenset[str]:
    """Endpoints every principal may query without a grant: the built-in demo endpoint (named
    `demo_name`) when it is served, since it calls no upstream. A configured endpoint that takes its
    name gets no such pass."""
    overridden = any(e.name == demo_name for e in settings.endpoints)
    return frozenset({demo_name}) if settings.demo_endpoint and not overridden else frozenset()


class Permissions:
    """The gateway's permission checks. `swap` replaces every grant at once; the checks only read,
    from the event loop thread, so no lock is needed."""

    def __init__(self, grants: Iterable[GrantInfo] = (), *, public: Iterable[str] = ()) -> None:
        self._table: GrantTable = grant_table(grants)
        self._public = frozenset(public)

    def swap(self, table: GrantTable) -> None:
        self._table = table

    def set_public(self, public: Iterable[str]) -> None:
        """A configuration reload changed which endpoints are open to every principal."""
        self._public = frozenset(public)

    def can_query(self, principal: Principal, endpoint: str) -> bool:
        if endpoint in self._public:
            return True
        return self.can_use(principal, "endpoint", endpoint)

    def can_use(self, principal: Principal, kind: str, name: str) -> bool:
        """May `principal` query the resource (`kind` one of store.RESOURCE_KINDS) called `name`?"""
        if principal.is_admin:
            return True
        grants = self._table.get((kind, name))
        if grants is None:
            return False
        return principal.id in grants.query_principals or not grants.query_groups.isdisjoint(principal.groups)

    def can_manage(self, principal: Principal, endpoint: str) -> bool:
        if principal.is_admin:
            return True
        grants = self._table.get(("endpoint", endpoint))
        if grants is None:
            return False
        return principal.id in grants.manage_principals or not grants.manage_groups.isdisjoint(principal.groups)

    def queryable(self, principal: Principal, names: Iterable[str]) -> list[str]:
        """`names`, in order, without those `principal` may not query (for the model lists)."""
        if principal.is_admin:
            return list(names)
        return [name for name in names if self.can_query(principal, name)]

    def require_use(self, principal: Principal, kind: str, name: str, param: str | None = None) -> None:
        """403 unless `principal` may use the hosted tool (`kind` connection or function) `name`."""
        if not self.can_use(principal, kind, name):
            raise GatewayError(
                ErrorKind.PERMISSION,
                f"The principal '{principal.name}' does not have CAN_QUERY on the {kind} '{name}'.",
                param=param,
            )

    def require_query(self, principal: Principal, endpoint: str) -> None:
        """403 unless `principal` may query `endpoint`."""
        if not self.can_query(principal, endpoint):
            raise GatewayError(
                ErrorKind.PERMISSION,
                f"The principal '{principal.name}' does not have CAN_QUERY on the endpoint '{endpoint}'.",
            )
