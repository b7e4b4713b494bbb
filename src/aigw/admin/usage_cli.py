"""`aigw usage` (a usage report) and `aigw usage export` (Parquet files).

    aigw usage [--endpoint E] [--principal P] [--since 2026-11-01|24h] [--until ...]
               [--group-by endpoint|principal|model|day] [--json]
    aigw usage export --out DIR [--format parquet] [--since ...] [--until ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click
import msgspec
from sqlalchemy.exc import SQLAlchemyError

from aigw.admin.usage_api import UsageReport, parse_time
from aigw.store import Store
from aigw.store.recording import GROUP_BY, RecordingStore, UsageQuery, UsageSummary

_TIME_HELP = "a date (2026-11-01, UTC), an ISO time, or a duration back from now (24h, 7d)"


def _time_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, datetime.now(timezone.utc))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def make_usage_group(open_store: Callable[[], Store]) -> click.Group:
    """The `usage` command group; `open_store` opens the configured store (migrated)."""

    @contextmanager
    def recording_session() -> Iterator[RecordingStore]:
        try:
            store = open_store()
        except SQLAlchemyError as exc:
            raise click.ClickException(f"cannot open the database: {exc}") from exc
        try:
            yield RecordingStore(store.engine)
        except SQLAlchemyError as exc:
            raise click.ClickException(f"database error: {exc}") from exc
        finally:
            store.close()

    @click.group(name="usage", invoke_without_command=True)
    @click.option("--endpoint", default=None, help="Only this endpoint.")
    @click.option("--principal", default=None, help="Only this principal (user or service principal name).")
    @click.option("--since", default=None, callback=_time_option, help=f"From (inclusive): {_TIME_HELP}.")
    @click.option("--until", default=None, callback=_time_option, help=f"To (exclusive): {_TIME_HELP}.")
    @click.option("--group-by", "group_by", type=click.Choice(GROUP_BY), default=None, help="One row per value (default: totals).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.pass_context
    def usage(
        ctx: click.Context,
        endpoint: str | None,
        principal: str | None,
        since: datetime | None,
        until: datetime | None,
        group_by: str | None,
        as_json: bool,
    ) -> None:
        """Requests, errors, tokens and latency from the usage records."""
        if ctx.invoked_subcommand is not None:
            return
        query = UsageQuery(endpoint=endpoint, principal=principal, since=since, until=until, group_by=group_by)  # type: ignore[arg-type]
        with recording_session() as recording:
            rows = recording.query_usage(query)
        if as_json:
            report = UsageReport(group_by=query.group_by, since=since, until=until, rows=rows)
            click.echo(msgspec.json.encode(report).decode())
        elif not rows:
            click.echo("No usage recorded for this selection.", err=True)
        else:
            click.echo(format_usage_table(rows, group_by))

    @usage.command(name="export")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for usage.parquet and payloads.parquet.")
    @click.option("--format", "fmt", type=click.Choice(["parquet"]), default="parquet", show_default=True)
    @click.option("--since", default=None, callback=_time_option, help=f"From (inclusive): {_TIME_HELP}.")
    @click.option("--until", default=None, callback=_time_option, help=f"To (exclusive): {_TIME_HELP}.")
    def export(out_dir: Path, fmt: str, since: datetime | None, until: datetime | None) -> None:
        """Write the usage and payload records to Parquet (DuckDB, pandas, Spark read them directly)."""
        from aigw.recording.export import export_parquet  # pyarrow loads only for this command

        with recording_session() as recording:
            result = export_parquet(recording, out_dir, since=since, until=until)
        click.echo(result.usage_path)
        click.echo(result.payloads_path)
        click.echo(f"Exported {result.usage_rows} usage and {result.payload_rows} payload record(s).", err=True)

    return usage


def format_usage_table(rows: Sequence[UsageSummary], group_by: str | None) -> str:
    header = (
        (group_by or "").upper() or "TOTAL", "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "TOTAL TOKENS",
        "AVG MS", "P50 MS", "P95 MS", "P99 MS", "OVERHEAD MS",
    )
    table = [header] + [
        (
            row.group if row.group is not None else "-" if group_by else "all",
            str(row.requests), str(row.errors), str(row.input_tokens), str(row.output_tokens), str(row.total_tokens),
            _ms(row.avg_latency_ms), _ms(row.p50_latency_ms), _ms(row.p95_latency_ms), _ms(row.p99_latency_ms),
            _ms(row.avg_overhead_ms),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    # The group column reads left-aligned, numbers right-aligned.
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in table
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
