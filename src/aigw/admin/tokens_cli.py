"""`aigw tokens create|list|revoke`.

`create` prints the token alone on stdout, so scripts can capture it
(`TOKEN=$(aigw tokens create --name ci --create-principal)`); every hint goes to stderr.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

import click

from aigw.admin.cli_support import echo_rows, format_table, json_option, store_session, when
from aigw.store import Store, TokenInfo

_DURATION = re.compile(r"^\s*([0-9]{1,12})\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Longer is no expiry worth stating, and past it dates overflow (datetime ends at year 9999).
MAX_DURATION = timedelta(weeks=5200)


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `45m`, `3600s`, `2w` → timedelta (positive)."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h, d or w (e.g. 30d)")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"invalid duration {text!r}: at most 5200w (100 years)")
    return timedelta(seconds=seconds)


def duration_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def make_tokens_group(open_store: Callable[[], Store]) -> click.Group:
    """The `tokens` command group; `open_store` opens the configured store (migrated)."""

    @click.group(name="tokens")
    def tokens() -> None:
        """Create, list and revoke API tokens."""

    @tokens.command(name="create")
    @click.option("--name", required=True, help="Token name, unique among active tokens.")
    @click.option("--principal", default=None, help="Who the token acts for (default: the name).")
    @click.option(
        "--service-principal",
        "service_principal",
        is_flag=True,
        help="The principal is a service principal.",
    )
    @click.option(
        "--create-principal",
        "create_principal",
        is_flag=True,
        help="Create the principal if it does not exist (a user, or a service principal with --service-principal).",
    )
    @click.option(
        "--expires-in",
        "expires_in",
        default=None,
        metavar="DURATION",
        callback=duration_option,
        help="Lifetime such as 30d, 12h or 3600s (default: never expires).",
    )
    def create(
        name: str,
        principal: str | None,
        service_principal: bool,
        create_principal: bool,
        expires_in: timedelta | None,
    ) -> None:
        """Create a token and print it (alone, on stdout). It is shown only this once. The principal
        must exist unless --create-principal is given: a typo must not mint a new identity."""
        expires_at = datetime.now(timezone.utc) + expires_in if expires_in else None
        kind = "service_principal" if service_principal else None
        owner = principal or name
        with store_session(open_store) as store:
            if not create_principal and store.get_principal(owner) is None:
                command = "service-principals" if service_principal else "users"
                raise click.ClickException(
                    f"no principal named {owner!r}: create it first (`aigw {command} create {owner}`) "
                    "or pass --create-principal"
                )
            info, plaintext = store.create_token(owner, name, expires_at, kind=kind)
        click.echo(plaintext)
        expiry = f", expires {when(info.expires_at)}" if info.expires_at else ""
        click.echo(
            f"Created token {info.id} ({info.name!r} for {info.principal_name!r}{expiry}). "
            "Store it now: it cannot be shown again.",
            err=True,
        )

    @tokens.command(name="list")
    @json_option
    def list_(as_json: bool) -> None:
        """List tokens (never their secrets)."""
        with store_session(open_store) as store:
            infos = store.list_tokens()
        now = datetime.now(timezone.utc)
        echo_rows(infos, as_json, _TOKEN_HEADER, lambda info: _token_row(info, now), "No tokens.")

    @tokens.command(name="revoke")
    @click.argument("id_or_name")
    def revoke(id_or_name: str) -> None:
        """Revoke the active token with this id or name. Running gateways stop accepting it within
        seconds."""
        with store_session(open_store) as store:
            revoked = store.revoke_token(id_or_name)
        if not revoked:
            raise click.ClickException(f"no active token with id or name {id_or_name!r}")
        click.echo(f"Revoked {id_or_name}.", err=True)

    return tokens


_TOKEN_HEADER = ("ID", "NAME", "PRINCIPAL", "CREATED", "EXPIRES", "REVOKED")


def format_token_table(infos: Sequence[TokenInfo], now: datetime) -> str:
    return format_table(_TOKEN_HEADER, [_token_row(info, now) for info in infos])


def _token_row(info: TokenInfo, now: datetime) -> tuple[str, ...]:
    return (
        info.id,
        info.name,
        info.principal_name,
        when(info.created_at),
        _expiry(info.expires_at, now),
        when(info.revoked_at) if info.revoked_at else "-",
    )


def _expiry(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "never"
    return when(expires_at) + (" (expired)" if expires_at <= now else "")
