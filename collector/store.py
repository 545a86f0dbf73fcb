"""Opening the DuckDB span store, and a simple (slow, row-at-a-time) insert used by tests.

The fast ingest path lives in the collector's writer; :func:`insert_span_rows` exists so tests and
small tools can put hand-built spans into a real ``otel_traces`` table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from .schema import (
    OTEL_TRACES_COLUMNS,
    STORE_COMPONENT,
    STORE_MIGRATIONS,
    STORE_SCHEMA_VERSION,
    check_and_migrate,
    check_version,
    refuse_foreign_otel_traces,
)

CHECKPOINT_THRESHOLD = "256MB"


def open_database(path: str | os.PathLike, read_only: bool = False):
    """Open (creating if needed) a tracehound DuckDB file and migrate every component's tables.

    Returns a ``duckdb.DuckDBPyConnection``. Use ``con.cursor()`` per thread. ``read_only`` opens
    change nothing but still check the versions.
    Raises :class:`tracehound.collector.schema.SchemaTooNewError` for a database from a newer
    tracehound (read-only too), :class:`~tracehound.collector.schema.ForeignTableError` for a
    database with an ``otel_traces`` table of other columns that tracehound never stamped, and
    ``duckdb.IOException`` if another process holds the file. The connection is closed on error.
    """
    import duckdb

    con = duckdb.connect(str(path), read_only=read_only)
    try:
        _check_or_migrate(con, read_only)
    except BaseException:
        con.close()
        raise
    return con


def _check_or_migrate(con, read_only: bool) -> None:
    if read_only:
        check_version(con, STORE_COMPONENT, STORE_SCHEMA_VERSION)
        try:
            from tracehound.analyzer.schema import ANALYZER_COMPONENT, ANALYZER_SCHEMA_VERSION
        except ImportError:
            return
        check_version(con, ANALYZER_COMPONENT, ANALYZER_SCHEMA_VERSION)
        return
    # Checkpoint (compress and write row groups) at the latest every 256 MB of WAL instead of
    # DuckDB's 16 MB: the span writer checkpoints itself each time a row group fills (about
    # 50 MB of WAL for typical spans, see collector/writer.py), which leaves no free blocks;
    # this is only the bound for unusually large spans. A crash replays at most 256 MB of WAL.
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    if check_version(con, STORE_COMPONENT, STORE_SCHEMA_VERSION) == 0:
        refuse_foreign_otel_traces(con)
    check_and_migrate(con, STORE_COMPONENT, STORE_SCHEMA_VERSION, STORE_MIGRATIONS)
    try:
        from tracehound.analyzer.schema import ensure_analyzer_schema
    except ImportError:  # analyzer not installed: the store alone still works
        pass
    else:
        ensure_analyzer_schema(con)


_DEFAULTS = {
    "TraceState": "",
    "ParentSpanId": "",
    "SpanKind": "Internal",
    "ServiceName": "unknown_service",
    "ResourceAttributes": {},
    "ResourceSchemaUrl": "",
    "ResourceDroppedAttributesCount": 0,
    "ScopeName": "",
    "ScopeVersion": "",
    "ScopeAttributes": {},
    "ScopeSchemaUrl": "",
    "ScopeDroppedAttributesCount": 0,
    "SpanAttributes": {},
    "StatusCode": "Unset",
    "StatusMessage": "",
    "Flags": 0,
    "DroppedAttributesCount": 0,
    "DroppedEventsCount": 0,
    "DroppedLinksCount": 0,
    "Events": [],
    "Links": [],
}


def insert_span_rows(con, rows: Iterable[Mapping]) -> int:
    """Insert spans given as dicts keyed by ``otel_traces`` column names. Slow; for tests and tools.

    ``Timestamp`` (and an event's ``Timestamp``) is an int of nanoseconds since the Unix epoch;
    ``Duration`` is ns. Attribute maps are ``dict[str, str]``. Missing optional columns take neutral
    defaults (``ParentSpanId=''``, ``SpanKind='Internal'``, ``StatusCode='Unset'``, empty maps/lists).
    Returns the number of rows inserted. Raises ``KeyError`` when a required column
    (``Timestamp``, ``TraceId``, ``SpanId``, ``SpanName``, ``Duration``) is missing.
    """
    import pyarrow as pa

    columns: dict[str, list] = {c: [] for c in OTEL_TRACES_COLUMNS}
    for row in rows:
        full = {**_DEFAULTS, **row}
        for c in OTEL_TRACES_COLUMNS:
            value = full[c]
            if c.endswith("Attributes"):
                value = list(value.items())
            elif c in ("Events", "Links"):
                value = [{**e, "Attributes": list(e.get("Attributes", {}).items())} for e in value]
            columns[c].append(value)
    count = len(columns["TraceId"])
    if count:
        arrow_spans = pa.table(columns, schema=otel_traces_arrow_schema())
        con.register("_tracehound_rows", arrow_spans)
        try:
            con.execute("INSERT INTO otel_traces SELECT * FROM _tracehound_rows")
        finally:
            con.unregister("_tracehound_rows")
    return count


def otel_traces_arrow_schema():
    """The Arrow schema matching ``otel_traces`` column for column (used by batch inserts)."""
    import pyarrow as pa

    attrs = pa.map_(pa.string(), pa.string())
    u32 = pa.uint32()
    event = pa.struct(
        [
            ("Timestamp", pa.timestamp("ns")),
            ("Name", pa.string()),
            ("Attributes", attrs),
            ("DroppedAttributesCount", u32),
        ]
    )
    link = pa.struct(
        [
            ("TraceId", pa.string()),
            ("SpanId", pa.string()),
            ("TraceState", pa.string()),
            ("Attributes", attrs),
            ("DroppedAttributesCount", u32),
            ("Flags", u32),
        ]
    )
    types = {
        "Timestamp": pa.timestamp("ns"),
        "Duration": pa.int64(),
        "Events": pa.list_(event),
        "Links": pa.list_(link),
        "ResourceDroppedAttributesCount": u32,
        "ScopeDroppedAttributesCount": u32,
        "Flags": u32,
        "DroppedAttributesCount": u32,
        "DroppedEventsCount": u32,
        "DroppedLinksCount": u32,
    }
    return pa.schema(
        [(c, types.get(c, attrs if c.endswith("Attributes") else pa.string())) for c in OTEL_TRACES_COLUMNS]
    )
