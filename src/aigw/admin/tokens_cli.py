"""`aigw tokens create|list|revoke`.

`create` prints the token alone on stdout, so scripts can capture it
(`TOKEN=$(aigw tokens create --name ci)`); every hint goes to stderr.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import click
from sqlalchemy.exc import SQLAlchemyError

from aigw.store import AlreadyExists, Store, TokenInfo

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `45m`, `3600s`, `2w` → timedelta (positive)."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h, d or w (e.g. 30d)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])


def _duration_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def make_tokens_group(open_store: Callable[[], Store]) -> click.Group:
    """The `tokens` command group; `open_store` opens the configured store (migrated)."""

    @contextmanager
    def store_session() -> Iterator[Store]:
        try:
            store = open_store()
        except SQLAlchemyError as exc:
            raise click.ClickException(f"cannot open the database: {exc}") from exc
        try:
            yield store
        finally:
            store.close()

    @click.group(name="tokens")
    def tokens() -> None:
        """Create, list and revoke API tokens."""

    @tokens.command(name="create")
    @click.option("--name", required=True, help="Token name, unique among active tokens.")
    @click.option("--principal", default=None, help="Who the token acts for (default: the name).")
    @click.option(
        "--expires-in",
        "expires_in",
        default=None,
        metavar="DURATION",
        callback=_duration_option,
        help="Lifetime such as 30d, 12h or 3600s (default: never expires).",
    )
    def create(name: str, principal: str | None, expires_in: timedelta | None) -> None:
        """Create a token and print it (alone, on stdout). It is shown only this once."""
        expires_at = datetime.now(timezone.utc) + expires_in if expires_in else None
        with store_session() as store:
            try:
                info, plaintext = store.create_token(principal or name, name, expires_at)
            except (AlreadyExists, ValueError) as exc:
                raise click.ClickException(str(exc)) from exc
        click.echo(plaintext)
        expiry = f", expires {_when(info.expires_at)}" if info.expires_at else ""
        click.echo(
            f"Created token {info.id} ({info.name!r} for {info.principal_name!r}{expiry}). "
            "Store it now: it cannot be shown again.",
            err=True,
        )

    @tokens.command(name="list")
    def list_() -> None:
        """List tokens (never their secrets)."""
        with store_session() as store:
            infos = store.list_tokens()
        if not infos:
            click.echo("No tokens.", err=True)
            return
        click.echo(format_token_table(infos, datetime.now(timezone.utc)))

    @tokens.command(name="revoke")
    @click.argument("id_or_name")
    def revoke(id_or_name: str) -> None:
        """Revoke the active token with this id or name. Running gateways stop accepting it within
        seconds."""
        with store_session() as store:
            revoked = store.revoke_token(id_or_name)
        if not revoked:
            raise click.ClickException(f"no active token with id or name {id_or_name!r}")
        click.echo(f"Revoked {id_or_name}.", err=True)

    return tokens


def format_token_table(infos: Sequence[TokenInfo], now: datetime) -> str:
    header = ("ID", "NAME", "PRINCIPAL", "CREATED", "EXPIRES", "REVOKED")
    rows = [header] + [
        (
            info.id,
            info.name,
            info.principal_name,
            _when(info.created_at),
            _expiry(info.expires_at, now),
            _when(info.revoked_at) if info.revoked_at else "-",
        )
        for info in infos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def _expiry(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "never"
    return _when(expires_at) + (" (expired)" if expires_at <= now else "")
