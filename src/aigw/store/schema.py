"""Table definitions used by the queries in this package.

The migrations in `migrations/versions/` own the real schema; these definitions must describe the same
tables (Alembic's autogenerate compares the two, which is how a drift is caught). Constraint names come
from one naming convention so that later migrations can refer to them on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zones: values are stored as naive UTC text, which also keeps them comparable
    as strings in WHERE clauses. PostgreSQL stores `timestamptz`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware (UTC) datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

principals = Table(
    "principals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("name"),
    CheckConstraint("kind IN ('user', 'service_principal')", name="kind"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(12), primary_key=True),  # the public part of the token
    Column(
        "principal_id",
        Integer,
        ForeignKey("principals.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    # Names identify tokens for `aigw tokens revoke NAME`, so an active name must be unique; a revoked
    # token's name may be reused. The same index makes concurrent first-start bootstraps collide.
    Index(
        "uq_tokens_active_name",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

groups = Table(
    "groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("name"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "principal_id",
        Integer,
        ForeignKey("principals.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,  # the primary key leads with group_id; deleting a principal looks up by this
    ),
    Column("created_at", UTCDateTime, nullable=False),
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # What the grant is on: an endpoint, an MCP connection or a Python function (see
    # records.RESOURCE_KINDS; checked by the store, migration 0005). They live in the YAML
    # configuration, not here: a grant names one (in `endpoint`, whatever its kind), and may name
    # one that the configuration of some instance does not (yet) have.
    Column("resource_kind", String(16), nullable=False, server_default="endpoint"),
    Column("endpoint", String(NAME_LENGTH), nullable=False),
    Column("principal_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), nullable=True),
    Column("group_id", Integer, ForeignKey("groups.id", ondelete="CASCADE"), nullable=True),
    Column("permission", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("permission IN ('CAN_QUERY', 'CAN_MANAGE')", name="permission"),
    CheckConstraint("(principal_id IS NULL) <> (group_id IS NULL)", name="one_subject"),
    # One grant per (resource, subject): granting again changes its permission. Partial indexes,
    # because a unique constraint over a nullable column treats every NULL as distinct.
    Index(
        "uq_grants_resource_principal",
        "resource_kind",
        "endpoint",
        "principal_id",
        unique=True,
        sqlite_where=text("principal_id IS NOT NULL"),
        postgresql_where=text("principal_id IS NOT NULL"),
    ),
    Index(
        "uq_grants_resource_group",
        "resource_kind",
        "endpoint",
        "group_id",
        unique=True,
        sqlite_where=text("group_id IS NOT NULL"),
        postgresql_where=text("group_id IS NOT NULL"),
    ),
)


# -- usage and payload records (aigw.recording) ---------------------------------------------------------
# Written in batches by the background record writer. `request_id` is the primary key so that a replayed
# batch (after a timeout whose INSERT did commit, or from the spill files) is ignored, never duplicated.
# Free text is Text, not String(n): PostgreSQL would refuse an over-long value and with it the whole
# batch. No foreign keys: records outlive principals, and a record must never be refused.

usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("event_time", UTCDateTime, nullable=False),
    Column("principal_id", Integer, nullable=True),
    Column("principal_name", Text, nullable=True),
    Column("user_agent", Text, nullable=True),
    Column("surface", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("destination", Text, nullable=True),
    Column("model", Text, nullable=True),
    Column("status", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("latency_ms", Double, nullable=False),
    Column("upstream_latency_ms", Double, nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("total_tokens", Integer, nullable=True),
    Column("streamed", Boolean, nullable=False),
    Column("tags", Text, nullable=True),  # JSON object of strings
    Column("attempts", Text, nullable=True),  # JSON list of {destination, status, latency_ms, error}
    Column("policies", Text, nullable=True),  # JSON list of {policy, phase, verdict, categories, ms}
    Index("ix_usage_records_event_time", "event_time"),
    Index("ix_usage_records_endpoint_event_time", "endpoint", "event_time"),
    Index("ix_usage_records_principal_name_event_time", "principal_name", "event_time"),
)

payload_records = Table(
    "payload_records",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("event_time", UTCDateTime, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("principal_name", Text, nullable=True),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("request_body", Text, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("request_marker", Text, nullable=True),  # MAX_REQUEST_SIZE_EXCEEDED: body over the cap, left out
    Column("response_marker", Text, nullable=True),  # MAX_RESPONSE_SIZE_EXCEEDED
    Index("ix_payload_records_event_time", "event_time"),
    Index("ix_payload_records_endpoint_event_time", "endpoint", "event_time"),
    Index("ix_payload_records_principal_name_event_time", "principal_name", "event_time"),
)


# -- stored Responses (aigw.agent) --------------------------------------------------------------------
# Responses API objects kept for `previous_response_id` chains, retrieval and background runs. The JSON
# columns are read and written whole, never queried inside. A principal's responses go with it; the
# chain link has no foreign key, because deleting one response must not delete or break its successors
# (their history simply ends there).

responses = Table(
    "responses",
    metadata,
    Column("id", Text, primary_key=True),  # "resp_<hex>", made by the gateway
    Column("principal_id", Integer, ForeignKey("principals.id", ondelete="CASCADE"), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("status", Text, nullable=False),  # queued, in_progress, completed, incomplete, failed, cancelled
    Column("previous_response_id", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("input_items", Text, nullable=False),  # JSON array: the items this request added
    Column("response", Text, nullable=False),  # JSON object: the Response as returned to the client
    # A principal's responses, newest first (listing); also serves the cascade from principals.
    Index("ix_responses_principal_id_created_at", "principal_id", "created_at"),
)

# Which stored response holds an item, by the item's id: `item_reference` input items name an item of
# an earlier response by its id alone. One row per (item, response): an item referenced again is kept
# in the referencing response's input too. The rows go with their response (cascade), so deleting a
# response, purging old ones or deleting a principal needs no extra step.
response_items = Table(
    "response_items",
    metadata,
    Column("item_id", Text, primary_key=True),
    Column("response_id", Text, ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True),
    # The cascade and the re-indexing of an updated response look up by this.
    Index("ix_response_items_response_id", "response_id"),
)
