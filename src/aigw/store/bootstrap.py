"""First start: mint an admin token so a fresh install can be used (and administered) at once."""

from __future__ import annotations

from aigw.store.store import Store

ADMIN_PRINCIPAL = "admin"
ADMIN_TOKEN_NAME = "admin"


def ensure_admin_token(store: Store) -> str | None:
    """On a store that has never held a token, create principal `admin` (is_admin) with a token named
    `admin` and return its plaintext for `aigw serve` to print once. Otherwise None.

    "Never held" counts revoked tokens too: revoking every token must not make the next restart mint
    a fresh admin token. Safe when several processes start at once: exactly one of them gets the token.
    """
    created = store.create_first_token(ADMIN_PRINCIPAL, ADMIN_TOKEN_NAME, is_admin=True)
    return None if created is None else created[1]
