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

Finding all spans of one trace: a plain ``"TraceId" = ?`` filter scans only the compressed TraceId
column (about 8 ms per million spans here, bench/store_queries.py); with a time hint
(``"Timestamp" BETWEEN``, e.g. from ``trace_summaries``) zone maps cut it to the row groups of that
time, because spans arrive roughly in time order. Store version 2 added a side table
``trace_bounds`` (trace id -> time bounds, ART-indexed); measured, it cost 15-20 bytes per span on
disk for a 1.2x faster lookup, so version 3 drops it again.

Versioning: table ``tracehound_schema(component, version)``. Each component (``store``, ``analyzer``)
migrates its own tables forward and refuses a database written by a newer tracehound.
"""

from __future__ import annotations

STORE_COMPONENT = "store"
STORE_SCHEMA_VERSION = 3

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


class SchemaError(RuntimeError):
    """The database cannot be used by this tracehound (the message says why and what to do)."""


class SchemaTooNewError(SchemaError):
    """The database was written by a newer tracehound; this version cannot read it safely."""


class ForeignTableError(SchemaError):
    """The database holds an ``otel_traces`` table that tracehound did not create (other columns)."""


def stored_version(con, component: str) -> int:
    """``component``'s schema version recorded in the database (0 if none). Reads only."""
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open and then refuses con.register()
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'tracehound_schema'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    rows = con.execute("SELECT version FROM tracehound_schema WHERE component = ?", [component]).fetchall()
    return rows[0][0] if rows else 0


def check_version(con, component: str, target_version: int) -> int:
    """Refuse a database whose ``component`` schema is newer than ``target_version``. Reads only.

    Returns the stored version (0 for none); raises :class:`SchemaTooNewError` (same message as
    :func:`check_and_migrate`), so read-only opens refuse a newer database too.
    """
    found = stored_version(con, component)
    if found > target_version:
        raise SchemaTooNewError(
            f"this database's {component!r} schema is version {found}, but this tracehound only "
            f"knows up to version {target_version}: upgrade tracehound (pip install -U tracehound) "
            f"or point --db at another file"
        )
    return found


def refuse_foreign_otel_traces(con) -> None:
    """Before a version-0 migration: refuse an existing ``otel_traces`` with other columns.

    Adopting it would stamp it as ours and make every insert fail. A table with exactly our
    columns (in order) is adopted. Raises :class:`ForeignTableError`.
    """
    columns = tuple(
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'otel_traces' "
            "ORDER BY ordinal_position"
        ).fetchall()
    )
    if columns and columns != OTEL_TRACES_COLUMNS:
        shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
        raise ForeignTableError(
            f"this database already has an otel_traces table that tracehound did not create "
            f"(columns {shown}): point --db at another file, or rename that table"
        )


def check_and_migrate(con, component: str, target_version: int, migrations: dict) -> int:
    """Bring ``component``'s tables to ``target_version``.

    ``migrations`` maps a version ``v`` to a list of SQL statements that take the tables from
    ``v - 1`` to ``v`` (version 1 creates them). Runs in one transaction.

    Returns the version found before migrating (0 for a new database).
    Raises :class:`SchemaTooNewError` if the stored version is newer than ``target_version``.
    """
    con.execute(SCHEMA_TABLE_DDL)
    found = check_version(con, component, target_version)
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


STORE_MIGRATIONS = {
    1: [OTEL_TRACES_DDL],
    # 2 created the side table trace_bounds (and backfilled it); 3 drops it, so a database still at
    # version 1 goes straight to 3 without building it.
    2: [],
    3: ["DROP INDEX IF EXISTS trace_bounds_trace_id", "DROP TABLE IF EXISTS trace_bounds"],
}
