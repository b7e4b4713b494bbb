"""Recording: usage and payload records, the background batch writer, Prometheus metrics, export.

The request path builds a `UsageRecord` (and, where enabled, a `PayloadRecord`) and calls
`RecordWriter.submit`; the writer stores them in batches off the request path, spilling to local files
while the store is slow or down. `UsageMetrics.observe` counts each usage record for `/metrics`.
Queries over the stored records live in `aigw.store.recording`; the Parquet export in `export`.
"""

from aigw.recording.metrics import CONTENT_TYPE, UsageMetrics
from aigw.recording.records import (
    REQUEST_MARKER,
    RESPONSE_MARKER,
    Attempt,
    PayloadRecord,
    UsageRecord,
    capture_body,
)
from aigw.recording.writer import RecordSink, RecordWriter, WriterStats

__all__ = [
    "CONTENT_TYPE",
    "REQUEST_MARKER",
    "RESPONSE_MARKER",
    "Attempt",
    "PayloadRecord",
    "RecordSink",
    "RecordWriter",
    "UsageMetrics",
    "UsageRecord",
    "WriterStats",
    "capture_body",
]
