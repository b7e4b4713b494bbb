"""Export of the recording tables to Parquet files that DuckDB, pandas, Polars and Spark read as is.

Rows stream from the database in batches (a server-side cursor on PostgreSQL) and each batch becomes
one or more row groups, so a table of any size exports in bounded memory. Files are written under a
temporary name and renamed when complete: a reader never sees half a file.

`tags` is a map<string, string>, `attempts` a list<struct<destination, status, latency_ms, error>> and
`policies` a list<struct<policy, phase, verdict, categories, ms>>, so all can be queried without
parsing JSON (DuckDB: `tags['team']`, `unnest(attempts)`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from aigw.store.recording import RecordingStore

USAGE_FILE = "usage.parquet"
PAYLOADS_FILE = "payloads.parquet"

_TIME = pa.timestamp("us", tz="UTC")
ATTEMPT_TYPE = pa.struct(
    [("destination", pa.string()), ("status", pa.int32()), ("latency_ms", pa.float64()), ("error", pa.string())]
)
POLICY_RUN_TYPE = pa.struct(
    [("policy", pa.string()), ("phase", pa.string()), ("verdict", pa.string()), ("categories", pa.list_(pa.string())), ("ms", pa.float64())]
)
USAGE_SCHEMA = pa.schema(
    [
        ("event_time", _TIME),
        ("request_id", pa.string()),
        ("principal_id", pa.int64()),
        ("principal_name", pa.string()),
        ("user_agent", pa.string()),
        ("surface", pa.string()),
        ("endpoint", pa.string()),
        ("destination", pa.string()),
        ("model", pa.string()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("latency_ms", pa.float64()),
        ("upstream_latency_ms", pa.float64()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("total_tokens", pa.int64()),
        ("streamed", pa.bool_()),
        ("tags", pa.map_(pa.string(), pa.string())),
        ("attempts", pa.list_(ATTEMPT_TYPE)),
        ("policies", pa.list_(POLICY_RUN_TYPE)),
    ]
)
# Bodies can be large: 64-bit offsets, so a batch of big bodies cannot overflow a column.
PAYLOAD_SCHEMA = pa.schema(
    [
        ("event_time", _TIME),
        ("request_id", pa.string()),
        ("endpoint", pa.string()),
        ("principal_name", pa.string()),
        ("status", pa.int32()),
        ("latency_ms", pa.float64()),
        ("request_body", pa.large_string()),
        ("response_body", pa.large_string()),
        ("request_marker", pa.string()),
        ("response_marker", pa.string()),
    ]
)


class ExportResult(msgspec.Struct, frozen=True):
    usage_path: str
    usage_rows: int
    payloads_path: str
    payload_rows: int


def export_parquet(
    store: RecordingStore,
    out_dir: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    usage_batch_rows: int = 50_000,
    payload_batch_rows: int = 200,
) -> ExportResult:
    """Write `usage.parquet` and `payloads.parquet` into `out_dir` (created), replacing older ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    usage_path, payloads_path = out_dir / USAGE_FILE, out_dir / PAYLOADS_FILE
    usage_rows = write_parquet(usage_path, USAGE_SCHEMA, store.iter_usage(since, until, batch_size=usage_batch_rows))
    payload_rows = write_parquet(
        payloads_path, PAYLOAD_SCHEMA, store.iter_payloads(since, until, batch_size=payload_batch_rows)
    )
    return ExportResult(str(usage_path), usage_rows, str(payloads_path), payload_rows)


def write_parquet(path: Path, schema: pa.Schema, batches: Iterable[list[dict[str, Any]]]) -> int:
    """Each batch of rows becomes a record batch appended to the file; returns the row count."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
            for batch in batches:
                if batch:
                    writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                    rows += len(batch)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return rows
