"""Admin HTTP API over grants (the route and the admin check are the app's):

    GET /admin/v1/grants?kind=endpoint|connection|function&name=

Every grant, or those on resources of `kind`, or named `name`; the same rows as
`aigw grants list --json`, in a `grants` list. A bad parameter raises a 400 GatewayError naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import msgspec

from aigw.errors import invalid
from aigw.store import RESOURCE_KINDS, GrantInfo, Store

_PARAMS = frozenset({"kind", "name"})
_encode = msgspec.json.Encoder().encode


class GrantList(msgspec.Struct, kw_only=True):
    grants: list[GrantInfo]


async def grants_response(store: Store, params: Mapping[str, str]) -> bytes:
    """The JSON body for `GET /admin/v1/grants`."""
    for name in params:
        if name not in _PARAMS:
            raise invalid(f"Unknown query parameter {name!r}; expected one of {', '.join(sorted(_PARAMS))}.", name)
    kind = params.get("kind") or None
    if kind is not None and kind not in RESOURCE_KINDS:
        raise invalid(f"kind must be one of {', '.join(RESOURCE_KINDS)}.", "kind")
    grants = await asyncio.to_thread(store.access.list_grants, params.get("name") or None, kind)  # type: ignore[arg-type]
    return _encode(GrantList(grants=grants))
