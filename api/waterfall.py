"""Turn the stored spans of one trace into a waterfall: tree order, depth and bar geometry."""

from __future__ import annotations

import datetime as dt

#: Attribute pairs (new semantic-convention name, old name) read for a span's code location.
_CODE_KEYS = (
    ("code.file.path", "code.filepath"),
    ("code.line.number", "code.lineno"),
    ("code.function.name", "code.function"),
)
_STATEMENT_KEYS = ("db.query.text", "db.statement")
_METHOD_KEYS = ("http.request.method", "http.method")
_URL_KEYS = ("url.full", "http.url")
#: Longest label (characters); the full text stays in the row's detail.
LABEL_MAX = 300


def _first(attrs: dict, keys) -> str | None:
    return next((attrs[k] for k in keys if attrs.get(k)), None)


def span_label(name: str, kind: str, attrs: dict) -> str:
    """What a waterfall row says: a DB span's statement (whitespace collapsed; SQLite span names
    hold the database file path, which says nothing), a cache span's operation and key, an outbound
    HTTP span's method and URL, a template render's template name, else the span name."""
    statement = _first(attrs, _STATEMENT_KEYS)
    if statement:
        label = " ".join(statement.split())
    elif attrs.get("cache.key") or attrs.get("cache.operation"):
        op = name if name.startswith("cache.") else f"cache.{attrs.get('cache.operation') or name}"
        label = f"{op} {attrs.get('cache.key', '')}".strip()
    elif kind == "Client" and _first(attrs, _URL_KEYS):
        label = f"{_first(attrs, _METHOD_KEYS) or name} {_first(attrs, _URL_KEYS)}"
    elif attrs.get("jinja2.template_name") and attrs["jinja2.template_name"] not in name:
        label = f"{name} {attrs['jinja2.template_name']}"
    else:
        label = name
    return label[:LABEL_MAX]


def _epoch_ns(ts: dt.datetime) -> int:
    # TIMESTAMP_NS comes back as a naive datetime (microsecond precision) in UTC.
    return int(ts.replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000_000 + ts.microsecond * 1000


def code_location(attrs: dict) -> dict | None:
    """``{"filepath", "lineno", "function"}`` from a span's ``code.*`` attributes, or ``None``."""
    values = [attrs.get(new) or attrs.get(old) for new, old in _CODE_KEYS]
    if not any(values):
        return None
    lineno = values[1]
    try:
        lineno = int(lineno) if lineno is not None else None
    except ValueError:
        lineno = None
    return {"filepath": values[0], "lineno": lineno, "function": values[2]}


def build_waterfall(trace_id: str, rows: list[tuple]) -> dict:
    """Build the trace dict from ``otel_traces`` rows.

    ``rows`` are ``(Timestamp, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, Duration ns,
    StatusCode, StatusMessage, SpanAttributes, ResourceAttributes, ScopeName, Events)``.
    Spans come back depth-first (children by start time; spans whose parent is missing are roots),
    each with ``depth``, ``start_offset_ms`` (from the trace start), ``duration_ms``, and
    ``offset_pct``/``width_pct`` (bar geometry, 0..100, bars at least 0.2 % wide).
    Returns ``{"trace_id", "start", "duration_ms", "span_count", "services", "root_name", "spans"}``.
    """
    spans = []
    for (
        ts,
        span_id,
        parent,
        name,
        kind,
        service,
        duration,
        status,
        message,
        attrs,
        res,
        scope,
        events,
    ) in rows:
        attrs = dict(attrs or {})
        start_ns = _epoch_ns(ts)
        spans.append(
            {
                "span_id": span_id,
                "parent_span_id": parent,
                "name": name,
                "kind": kind,
                "service": service,
                "start": ts,
                "start_ns": start_ns,
                "duration_ns": duration,
                "status_code": status,
                "status_message": message,
                "scope_name": scope,
                "attributes": dict(sorted(attrs.items())),
                "resource_attributes": dict(sorted((res or {}).items())),
                "events": [{"name": e["Name"], "timestamp": e["Timestamp"]} for e in events or []],
                "code_location": code_location(attrs),
                "statement": _first(attrs, _STATEMENT_KEYS),
                "label": span_label(name, kind, attrs),
                "highlight": False,
            }
        )
    t0 = min(s["start_ns"] for s in spans)
    t1 = max(s["start_ns"] + s["duration_ns"] for s in spans)
    total = max(t1 - t0, 1)
    ids = {s["span_id"] for s in spans}
    children: dict[str, list] = {}
    roots = []
    for s in sorted(spans, key=lambda s: (s["start_ns"], s["span_id"])):
        if s["parent_span_id"] and s["parent_span_id"] in ids and s["parent_span_id"] != s["span_id"]:
            children.setdefault(s["parent_span_id"], []).append(s)
        else:
            roots.append(s)
    ordered: list[dict] = []
    seen: set[str] = set()
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:  # a cycle of bad parent ids must not loop forever
            continue
        seen.add(span["span_id"])
        offset = span["start_ns"] - t0
        span.update(
            depth=depth,
            start_offset_ms=offset / 1e6,
            duration_ms=span["duration_ns"] / 1e6,
            offset_pct=round(100 * offset / total, 3),
            width_pct=round(max(100 * span["duration_ns"] / total, 0.2), 3),
        )
        del span["start_ns"]
        ordered.append(span)
        for child in reversed(children.get(span["span_id"], [])):
            stack.append((child, depth + 1))
    for span in spans:  # spans caught in a parent cycle are appended flat
        if span["span_id"] not in seen:
            seen.add(span["span_id"])
            offset = span.pop("start_ns") - t0
            span.update(
                depth=0,
                start_offset_ms=offset / 1e6,
                duration_ms=span["duration_ns"] / 1e6,
                offset_pct=round(100 * offset / total, 3),
                width_pct=round(max(100 * span["duration_ns"] / total, 0.2), 3),
            )
            ordered.append(span)
    root = ordered[0]
    return {
        "trace_id": trace_id,
        "start": root["start"],
        "duration_ms": total / 1e6,
        "span_count": len(ordered),
        "services": sorted({s["service"] for s in ordered}),
        "root_name": root["name"],
        "spans": ordered,
    }
