"""What the admin commands share: opening the store, tables for people, JSON for scripts.

Results go to stdout (a table, or with `--json` a JSON array); hints and confirmations go to stderr,
so `aigw users list --json | jq` and `TOKEN=$(aigw tokens create ...)` see only data. Errors are
`click.ClickException`s: a message on stderr and exit status 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import click
import msgspec
from sqlalchemy.exc import SQLAlchemyError

from aigw.store import Store, StoreError

json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")


@contextmanager
def store_session(open_store: Callable[[], Store]) -> Iterator[Store]:
    """The store, opened and closed around one command; expected failures become CLI errors."""
    try:
        store = open_store()
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from exc
    try:
        yield store
    except (StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def echo_rows(
    items: Sequence[Any],
    as_json: bool,
    header: Sequence[str],
    row: Callable[[Any], Sequence[str]],
    empty: str,
) -> None:
    """`items` (msgspec structs) as a JSON array, or as a table with `empty` on stderr if none."""
    if as_json:
        click.echo(msgspec.json.encode(list(items)).decode())
    elif not items:
        click.echo(empty, err=True)
    else:
        click.echo(format_table(header, [row(item) for item in items]))


def when(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%MZ")
