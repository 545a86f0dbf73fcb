"""Reading ``otel_traces`` back in tests, with nanosecond times as ints."""

from __future__ import annotations

from tracehound.collector.store import open_database

ROW_SQL = """
SELECT epoch_ns("Timestamp") AS start_ns, "Duration", "TraceId", "SpanId", "ParentSpanId", "TraceState",
       "SpanName", "SpanKind", "ServiceName", "ResourceAttributes", "ResourceSchemaUrl",
       "ResourceDroppedAttributesCount", "ScopeName", "ScopeVersion", "ScopeAttributes", "ScopeSchemaUrl",
       "ScopeDroppedAttributesCount", "SpanAttributes", "StatusCode", "StatusMessage", "Flags",
       "DroppedAttributesCount", "DroppedEventsCount", "DroppedLinksCount",
       list_transform("Events", lambda e: {'ts': epoch_ns(e."Timestamp"), 'name': e."Name",
                                      'attrs': e."Attributes", 'dropped': e."DroppedAttributesCount"}) AS events,
       list_transform("Links", lambda k: {'trace_id': k."TraceId", 'span_id': k."SpanId",
                                     'trace_state': k."TraceState", 'attrs': k."Attributes",
                                     'dropped': k."DroppedAttributesCount", 'flags': k."Flags"}) AS links
FROM otel_traces
"""


def stored_spans(db_path) -> dict[str, dict]:
    """Every stored span as a dict keyed by column (times in ns), indexed by SpanId."""
    con = open_database(db_path, read_only=True)
    try:
        cursor = con.execute(ROW_SQL)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        con.close()
    return {row["SpanId"]: row for row in rows}
