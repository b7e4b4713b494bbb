"""`aigw purge`: delete old usage records, payload logs and stored responses now.

The same deletion the gateway's retention job runs (aigw.store.retention), for one-off clean-ups or
for a cron job where instances run without `retention` set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import click

from aigw.admin.cli_support import store_session
from aigw.admin.tokens_cli import duration_option
from aigw.store import Store
from aigw.store.retention import PurgeCutoffs, purge


def make_purge_command(open_store: Callable[[], Store]) -> click.Command:
    def age_option(name: str, what: str):  # type: ignore[no-untyped-def]
        return click.option(
            f"--{name}-older-than", f"{name}_age", metavar="DURATION", callback=duration_option,
            help=f"Delete {what} older than this (30d, 12h, 2w ...).",
        )

    @click.command(name="purge")
    @age_option("usage", "usage records")
    @age_option("payloads", "payload logs")
    @age_option("responses", "stored responses (running background ones are kept)")
    @click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
    def purge_command(
        usage_age: timedelta | None, payloads_age: timedelta | None, responses_age: timedelta | None, dry_run: bool
    ) -> None:
        """Delete old records now. At least one --*-older-than is required."""
        if usage_age is None and payloads_age is None and responses_age is None:
            raise click.UsageError("give at least one of --usage-older-than, --payloads-older-than, --responses-older-than")
        now = datetime.now(timezone.utc)

        def before(age: timedelta | None) -> datetime | None:
            return None if age is None else now - age

        cutoffs = PurgeCutoffs(usage=before(usage_age), payloads=before(payloads_age), responses=before(responses_age))
        with store_session(open_store) as store:
            counts = purge(store.engine, cutoffs, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        click.echo(
            f"{verb} {counts.usage} usage records, {counts.payloads} payload logs, {counts.responses} stored responses."
        )

    return purge_command
