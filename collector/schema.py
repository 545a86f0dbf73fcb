"""DDL and schema versioning for the span store (the ``otel_traces`` table).

Column names and meanings follow the OpenTelemetry Collector ClickHouse exporter's
``otel_traces`` table (opentelemetry-collector-contrib ``exporter/clickhouseexporter``), so the
analyzer's SQL also runs on ClickHouse tables that the Collector wrote:

* ``Timestamp``: span start, TIMESTAMP_NS (UTC, nanosecond precision).
* ``TraceId`` / ``SpanId`` / ``ParentSpanId``: lowercase hex (32 / 16 / 16 chars); ``''`` for a root's parent.
* ``SpanKind``: ``'Unspecified' | 'Internal' | 'Server' | 'Client' | 'Producer' | 'Consumer'``.
* ``StatusCode``: ``'Unset' | 'Ok' | 'Error'``.
* ``Duration``: BIGINT nanoseconds (end - start).
* ``ResourceAttributes`` / ``ScopeAttributes`` / ``SpanAttributes``: MAP(VARCHAR, VARCHAR). Values are
  rendered like pdata's ``Value.AsString()``: strings as-is, bools ``true``/``false``, ints in decimal,
  doubles in shortest round-trip form, bytes as base64, arrays and kvlists as JSON text.
* ``Events`` / ``Links``: lists of structs (ClickHouse stores them as Nested columns).

tracehound adds OTLP fields the ClickHouse table drops so every field round-trips: span ``Flags``,
dropped counts, scope attributes, schema URLs.

``trace_bounds`` (store version 2): one row per (trace, commit) with the trace's first and last span
start, written in the same transaction as the spans. It makes "all spans of one trace" fast: look
the bounds up (a scan of about one row per ten spans, three narrow columns), then read
``otel_traces`` with ``Timestamp BETWEEN`` them, which zone maps prune to a few row groups because
spans arrive roughly in time order (see :func:`tracehound.collector.store.trace_time_bounds`).
No ART index: measured, it cost about 15 bytes per span on disk for a lookup that the scan already
answers in a few milliseconds per million spans (bench/store_queries.py).

Versioning: table ``tracehound_schema(component, version)``. Each component (``store``, ``analyzer``)
migrates its own tables forward and refuses a database written by a newer tracehound.
"""

from __future__ import annotations

STORE_COMPONENT = "store"
STORE_SCHEMA_VERSION = 2

ATTR_MAP = "MAP(VARCHAR, VARCHAR)"

OTEL_TRACES_DDL = f"""
CREATE TABLE IF NOT EXISTS otel_traces (
    "Timestamp"              TIMESTAMP_NS NOT NULL,
    "TraceId"                VARCHAR NOT NULL,
    "SpanId"                 VARCHAR NOT NULL,
    "ParentSpanId"           VARCHAR NOT NULL,
    "TraceState"             VARCHAR NOT NULL,
    "SpanName"               VARCHAR NOT NULL,
    "SpanKind"               VARCHAR NOT NULL,
    "ServiceName"            VARCHAR NOT NULL,
    "ResourceAttributes"     {ATTR_MAP} NOT NULL,
    "ResourceSchemaUrl"      VARCHAR NOT NULL,
    "ResourceDroppedAttributesCount" UINTEGER NOT NULL,
    "ScopeName"              VARCHAR NOT NULL,
    "ScopeVersion"           VARCHAR NOT NULL,
    "ScopeAttributes"        {ATTR_MAP} NOT NULL,
    "ScopeSchemaUrl"         VARCHAR NOT NULL,
    "ScopeDroppedAttributesCount" UINTEGER NOT NULL,
    "SpanAttributes"         {ATTR_MAP} NOT NULL,
    "Duration"               BIGINT NOT NULL,
    "StatusCode"             VARCHAR NOT NULL,
    "StatusMessage"          VARCHAR NOT NULL,
    "Flags"                  UINTEGER NOT NULL,
    "DroppedAttributesCount" UINTEGER NOT NULL,
    "DroppedEventsCount"     UINTEGER NOT NULL,
    "DroppedLinksCount"      UINTEGER NOT NULL,
    "Events" STRUCT(
        "Timestamp" TIMESTAMP_NS,
        "Name" VARCHAR,
        "Attributes" {ATTR_MAP},
        "DroppedAttributesCount" UINTEGER
    )[] NOT NULL,
    "Links" STRUCT(
        "TraceId" VARCHAR,
        "SpanId" VARCHAR,
        "TraceState" VARCHAR,
        "Attributes" {ATTR_MAP},
        "DroppedAttributesCount" UINTEGER,
        "Flags" UINTEGER
    )[] NOT NULL
)
"""

#: Column names of ``otel_traces`` in table order.
OTEL_TRACES_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ResourceDroppedAttributesCount",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeSchemaUrl",
    "ScopeDroppedAttributesCount",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Flags",
    "DroppedAttributesCount",
    "DroppedEventsCount",
    "DroppedLinksCount",
    "Events",
    "Links",
)

SCHEMA_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS tracehound_schema (
    component VARCHAR PRIMARY KEY,
    version   INTEGER NOT NULL
)
"""


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer tracehound; this version cannot read it safely."""


def check_and_migrate(con, component: str, target_version: int, migrations: dict) -> int:
    """Bring ``component``'s tables to ``target_version``.

    ``migrations`` maps a version ``v`` to a list of SQL statements that take the tables from
    ``v - 1`` to ``v`` (version 1 creates them). Runs in one transaction.

    Returns the version found before migrating (0 for a new database).
    Raises :class:`SchemaTooNewError` if the stored version is newer than ``target_version``.
    """
    con.execute(SCHEMA_TABLE_DDL)
    row = con.execute("SELECT version FROM tracehound_schema WHERE component = ?", [component]).fetchone()
    found = row[0] if row else 0
    if found > target_version:
        raise SchemaTooNewError(
            f"this database's {component!r} schema is version {found}, but this tracehound only "
            f"knows up to version {target_version}: upgrade tracehound (pip install -U tracehound) "
            f"or point --db at another file"
        )
    if found == target_version:
        return found
    con.execute("BEGIN TRANSACTION")
    try:
        for version in range(found + 1, target_version + 1):
            for statement in migrations[version]:
                con.execute(statement)
        con.execute("INSERT OR REPLACE INTO tracehound_schema VALUES (?, ?)", [component, target_version])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return found


TRACE_BOUNDS_DDL = """
CREATE TABLE IF NOT EXISTS trace_bounds (
    "TraceId" VARCHAR NOT NULL,
    "Start"   TIMESTAMP_NS NOT NULL,
    "End"     TIMESTAMP_NS NOT NULL
)
"""

#: Appends the bounds of the traces in a view or table named ``{source}`` (same columns as otel_traces).
TRACE_BOUNDS_INSERT = 'INSERT INTO trace_bounds SELECT "TraceId", min("Timestamp"), max("Timestamp") FROM {source} GROUP BY "TraceId"'

STORE_MIGRATIONS = {
    1: [OTEL_TRACES_DDL],
    2: [
        TRACE_BOUNDS_DDL,
        TRACE_BOUNDS_INSERT.format(source="otel_traces"),
    ],
}
