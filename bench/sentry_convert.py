"""Convert Sentry performance-detector fixtures (event JSON) into ``otel_traces`` rows.

Used by ``sentry_parity.py``. The mapping (one event = one trace):

* The transaction (``contexts.trace``, or the ``is_segment`` span of a Span-V2 list) becomes the root
  ``Server`` span: ``http.route`` = the transaction name, ``http.request.method`` = ``request.method``
  (or the method prefix of the name, default ``GET``), ``http.response.status_code`` 200 (500 when
  the transaction status is not ok). Events without a transaction context get a synthetic root whose
  span id is the parent most spans point to (Sentry's test events all hang off ``'a' * 16``).
* ``db*`` ops become ``Client`` DB spans: ``db.system`` (``redis`` for redis ops, else
  ``data['db.system']``, else ``other_sql``) and ``db.statement`` = the description.
* ``http.client`` becomes a ``Client`` HTTP span: ``http.request.method`` and ``url.full`` parsed
  from ``"GET https://..."`` (relative URLs are resolved against ``request.url`` when the event has
  one), ``server.address``, and ``http.response.status_code`` from the span data or tags.
* Every other op becomes an ``Internal`` span named after its description (or op).
* The span's ``data`` is copied into the attributes (rendered like pdata ``AsString``), our mapped
  attributes win; ``sentry.op`` keeps the original op.
* Span ids that are not unique in the event (Sentry's ``create_span`` gives every span ``'b' * 16``)
  are replaced by unique ids; the parent structure is kept. Spans whose parent is not in the event
  are attached to the root, as Sentry treats the transaction as the implicit parent.
* Timestamps (float epoch seconds) become integer ns, rounded to the microsecond. Synthetic events
  that start at 0 are shifted to 2023-11-14 so they look like real traffic.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urljoin, urlsplit

HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
SERVICE = "sentry-fixture"
SYNTHETIC_EPOCH_S = 1_700_000_000


def load_event(path: str | Path) -> dict:
    """Read a fixture file and return it as an event dict (Span-V2 lists are turned into one)."""
    data = json.loads(Path(path).read_text())
    return span_v2_to_event(data) if isinstance(data, list) else data


def span_v2_to_event(spans: list[dict]) -> dict:
    """Turn a Span-V2 list (``attributes`` of ``{type, value}``, ``end_timestamp``, ``is_segment``) into
    the transaction-event shape the rest of this module reads."""

    def attrs(s):
        return {
            k: v.get("value") if isinstance(v, dict) else v for k, v in (s.get("attributes") or {}).items()
        }

    segment = next((s for s in spans if s.get("is_segment")), None)
    event: dict = {"spans": []}
    if segment:
        a = attrs(segment)
        event["transaction"] = a.get("sentry.segment.name") or segment.get("name")
        event["start_timestamp"] = segment["start_timestamp"]
        event["timestamp"] = segment["end_timestamp"]
        event["contexts"] = {
            "trace": {
                "trace_id": segment.get("trace_id"),
                "span_id": segment["span_id"],
                "op": a.get("sentry.op"),
                "status": segment.get("status"),
            }
        }
    for s in spans:
        if s is segment:
            continue
        a = attrs(s)
        event["spans"].append(
            {
                "span_id": s["span_id"],
                "parent_span_id": s.get("parent_span_id"),
                "trace_id": s.get("trace_id"),
                "op": a.get("sentry.op"),
                "description": a.get("sentry.description", s.get("name")),
                "start_timestamp": s["start_timestamp"],
                "timestamp": s["end_timestamp"],
                "status": s.get("status"),
                "data": {k: v for k, v in a.items() if not k.startswith("sentry.")},
            }
        )
    return event


def as_string(value) -> str | None:
    """Render an attribute value like pdata ``Value.AsString()`` (None stays None: dropped)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _ns(seconds: float, shift_s: int) -> int:
    return (round(float(seconds) * 1_000_000) + shift_s * 1_000_000) * 1000


def _new_id(name: str, index: int) -> str:
    return hashlib.sha1(f"{name}:{index}".encode()).hexdigest()[:16]


def convert_event(event: dict, name: str = "fixture") -> list[dict]:
    """Rows for :func:`tracehound.collector.store.insert_span_rows` (root span first).

    ``name`` seeds the ids made up for a synthetic root, a missing trace id and duplicate span ids.
    Raises ``ValueError`` when the event has no spans and no transaction.
    """
    spans = [s for s in event.get("spans") or [] if isinstance(s, dict)]
    ctx = (event.get("contexts") or {}).get("trace") or {}
    if not spans and not ctx:
        raise ValueError(f"{name}: no spans and no transaction context")
    trace_id = ctx.get("trace_id") or next((s["trace_id"] for s in spans if s.get("trace_id")), None)
    trace_id = (trace_id or hashlib.sha1(name.encode()).hexdigest()[:32]).lower()

    # unique span ids: rename every span whose id occurs more than once
    id_counts = Counter(s.get("span_id") for s in spans)
    ids = [
        s["span_id"] if s.get("span_id") and id_counts[s["span_id"]] == 1 else _new_id(name, i)
        for i, s in enumerate(spans)
    ]
    present = set(ids)

    root_span = None
    if ctx.get("span_id"):
        root_id = ctx["span_id"]
    else:
        parentless = [i for i, s in enumerate(spans) if not s.get("parent_span_id")]
        if len(parentless) == 1:  # an OTel-style event: the one span without a parent is the root
            root_span = parentless[0]
            root_id = ids[root_span]
        else:
            missing = Counter(s["parent_span_id"] for s in spans if s.get("parent_span_id") not in present)
            missing.pop(None, None)
            root_id = missing.most_common(1)[0][0] if missing else _new_id(name, -1)

    starts = [s["start_timestamp"] for s in spans]
    ends = [s.get("timestamp", s["start_timestamp"]) for s in spans]
    t0 = event.get("start_timestamp", min(starts, default=0.0))
    t1 = event.get("timestamp", max(ends, default=t0))
    if not isinstance(t0, (int, float)):
        t0 = min(starts, default=0.0)
    if not isinstance(t1, (int, float)):
        t1 = max(ends, default=t0)
    t0, t1 = min([t0, *starts]), max([t1, *ends])
    shift = SYNTHETIC_EPOCH_S if t0 < 1e9 else 0

    request = event.get("request") or {}
    sdk = event.get("sdk") or {}
    resource = {
        "service.name": SERVICE,
        "telemetry.sdk.name": sdk.get("name") or "sentry",
        "telemetry.sdk.language": {"javascript": "webjs"}.get(
            event.get("platform"), event.get("platform") or ""
        ),
        "sentry.fixture": name,
    }
    resource = {k: v for k, v in resource.items() if v}

    def row(span_id, parent, start, end, span_name, kind, attrs, status="Unset"):
        return {
            "Timestamp": _ns(start, shift),
            "TraceId": trace_id,
            "SpanId": span_id,
            "ParentSpanId": parent,
            "SpanName": span_name,
            "SpanKind": kind,
            "ServiceName": SERVICE,
            "ResourceAttributes": resource,
            "ScopeName": "sentry-fixture-converter",
            "SpanAttributes": {k: v for k, v in attrs.items() if v is not None},
            "Duration": max(0, _ns(end, shift) - _ns(start, shift)),
            "StatusCode": status,
        }

    rows = []
    if root_span is None:
        transaction = event.get("transaction") or "/"
        method, _, rest = transaction.partition(" ")
        if method.upper() in HTTP_METHODS and rest:
            route = rest
        else:
            method, route = request.get("method") or "GET", transaction
        ok = ctx.get("status") in (None, "ok")
        attrs = {
            "http.route": route,
            "http.request.method": method.upper(),
            "http.response.status_code": "200" if ok else "500",
            "url.full": request.get("url"),
            "sentry.op": ctx.get("op") or "http.server",
        }
        rows.append(
            row(root_id, "", t0, t1, f"{method.upper()} {route}", "Server", attrs, "Unset" if ok else "Error")
        )

    for i, s in enumerate(spans):
        parent = s.get("parent_span_id")
        if i == root_span:
            parent_id = ""
        elif parent in present and id_counts[parent] == 1:
            parent_id = parent
        else:
            parent_id = root_id
        op = s.get("op") or ""
        desc = s.get("description") or ""
        attrs = {k: as_string(v) for k, v in (s.get("data") or {}).items()}
        attrs["sentry.op"] = op
        start, end = s["start_timestamp"], s.get("timestamp", s["start_timestamp"])
        status = "Unset" if s.get("status") in (None, "ok") else "Error"
        if i == root_span:
            route = event.get("transaction") or desc or op
            attrs.update(
                {"http.route": route, "http.request.method": "GET", "http.response.status_code": "200"}
            )
            rows.insert(0, row(ids[i], "", start, end, f"GET {route}", "Server", attrs, status))
        elif op.startswith("db"):
            attrs["db.system"] = "redis" if "redis" in op else attrs.get("db.system") or "other_sql"
            if desc:
                attrs["db.statement"] = desc
            span_name = desc.split()[0] if desc.strip() else op
            rows.append(row(ids[i], parent_id, start, end, span_name, "Client", attrs, status))
        elif op == "http.client":
            method, _, url = desc.strip().partition(" ")
            if method.upper() not in HTTP_METHODS:
                method, url = (attrs.get("method") or "GET"), desc.strip()
            url = url.strip()
            if url and not urlsplit(url).scheme and request.get("url"):
                url = urljoin(request["url"], url)
            status_code = (
                attrs.get("http.response.status_code")
                or attrs.get("status_code")
                or (s.get("tags") or {}).get("http.status_code")
            )
            attrs.update(
                {
                    "http.request.method": method.upper(),
                    "url.full": url or None,
                    "server.address": urlsplit(url).hostname if url else None,
                    "http.response.status_code": status_code,
                }
            )
            rows.append(row(ids[i], parent_id, start, end, method.upper(), "Client", attrs, status))
        else:
            attrs["sentry.description"] = desc or None
            rows.append(row(ids[i], parent_id, start, end, desc or op or "span", "Internal", attrs, status))
    return rows


def insert_event(con, event: dict, name: str = "fixture") -> int:
    """Convert ``event`` and insert it into ``otel_traces`` on ``con``; returns the span count."""
    from tracehound.collector.store import insert_span_rows

    return insert_span_rows(con, convert_event(event, name))
