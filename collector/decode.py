"""OTLP ``ExportTraceServiceRequest`` -> one Arrow table shaped like ``otel_traces``.

Decoding is columnar: every span is visited once and its fields are appended to flat Python
lists (one per column, plus flat key/value/offset lists for the attribute maps); the lists become
Arrow arrays in one go at the end. Resource- and scope-level columns are built once per resource /
scope and expanded to one row per span with Arrow ``take`` (no per-span Python work for them).

Values are rendered like pdata's ``Value.AsString()`` (see :mod:`tracehound.collector.schema`).

Limits (documented in the README, section "Collector"):

* :data:`MAX_ATTRIBUTES` per attribute map (span, resource, scope, event, link): the first
  ``MAX_ATTRIBUTES`` are kept, the rest are dropped and added to that map's
  ``DroppedAttributesCount`` (the same rule the OTel SDK applies with its attribute count limit).
* :data:`MAX_VALUE_CHARS` per attribute value (after rendering to text): longer values are cut to
  that length, as the SDK's attribute value length limit does.

Both are reported to the client as a warning in ``partial_success.error_message`` (with
``rejected_spans`` 0, which the OTLP spec allows for warnings). Spans whose ``trace_id`` is not 16
bytes or whose ``span_id`` is not 8 bytes (or all zero) cannot be stored: they are counted in
``rejected_spans`` with a message, and the other spans are stored.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field

import pyarrow as pa

from .store import otel_traces_arrow_schema

#: Attributes kept per attribute map; the rest are counted as dropped (OTel SDK default is 128).
MAX_ATTRIBUTES = 1024
#: Longest attribute value kept, in characters of its text rendering (64 Ki characters).
MAX_VALUE_CHARS = 65536
#: How many individual problems are spelled out in ``partial_success.error_message``.
MAX_MESSAGES = 5

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_MAX_NS = (1 << 63) - 1

_SCHEMA = None


def arrow_schema() -> pa.Schema:
    """The cached Arrow schema of ``otel_traces``."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = otel_traces_arrow_schema()
    return _SCHEMA


@dataclass
class DecodedBatch:
    """The storable spans of one request and what happened to the others.

    ``table`` is ``None`` when no span was storable. ``rejected`` counts spans that could not be
    stored; ``messages`` explains rejections and warnings (truncation), at most :data:`MAX_MESSAGES`.
    """

    table: pa.Table | None
    spans: int
    rejected: int = 0
    messages: list[str] = field(default_factory=list)
    more_messages: int = 0

    def error_message(self) -> str:
        """One line for ``partial_success.error_message`` ('' when all is well)."""
        if not self.messages:
            return ""
        text = "; ".join(self.messages)
        if self.more_messages:
            text += f"; and {self.more_messages} more"
        return text


def _format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _raw(value):
    """An AnyValue as a JSON-able Python value (pdata ``AsRaw``)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        d = value.double_value
        return d if math.isfinite(d) else _format_double(d)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    return None


def render_value(value) -> str:
    """An OTLP ``AnyValue`` as text, like pdata ``Value.AsString()``.

    Strings as-is, bools ``true``/``false``, ints decimal, doubles shortest round-trip (``NaN``,
    ``+Inf``, ``-Inf``), bytes base64, arrays and kvlists compact JSON, an empty value ``''``.
    """
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return _format_double(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which in ("array_value", "kvlist_value"):
        return json.dumps(_raw(value), separators=(",", ":"), ensure_ascii=False)
    return ""


class _Problems:
    __slots__ = ("rejected", "messages", "more")

    def __init__(self):
        self.rejected = 0
        self.messages: list[str] = []
        self.more = 0

    def add(self, message: str) -> None:
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)
        else:
            self.more += 1


class _MapBuilder:
    """Flat keys/values/offsets for one MAP(VARCHAR, VARCHAR) column."""

    __slots__ = ("keys", "values", "offsets")

    def __init__(self):
        self.keys: list[str] = []
        self.values: list[str] = []
        self.offsets: list[int] = [0]

    def add(self, kvs, problems: _Problems, where: str) -> int:
        """Append one map from repeated ``KeyValue``; returns how many attributes were dropped."""
        keys, values = self.keys, self.values
        dropped = 0
        if len(kvs) > MAX_ATTRIBUTES:
            dropped = len(kvs) - MAX_ATTRIBUTES
            problems.add(
                f"{where}: kept {MAX_ATTRIBUTES} of {len(kvs)} attributes (limit), dropped {dropped}"
            )
            kvs = kvs[:MAX_ATTRIBUTES]
        for kv in kvs:
            value = kv.value
            text = value.string_value if value.WhichOneof("value") == "string_value" else render_value(value)
            if len(text) > MAX_VALUE_CHARS:
                problems.add(
                    f"{where}: attribute {kv.key!r} value of {len(text)} chars cut to {MAX_VALUE_CHARS} (limit)"
                )
                text = text[:MAX_VALUE_CHARS]
            keys.append(kv.key)
            values.append(text)
        self.offsets.append(len(keys))
        return dropped

    def array(self) -> pa.MapArray:
        t = pa.map_(pa.string(), pa.string())
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, pa.int32()),
            pa.array(self.keys, pa.string()),
            pa.array(self.values, pa.string()),
            type=t,
        )


def _bad_id(trace_id: bytes, span_id: bytes) -> str | None:
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return f"trace_id {trace_id.hex()!r} ({len(trace_id)} bytes) is not 16 non-zero bytes"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return f"span_id {span_id.hex()!r} ({len(span_id)} bytes) is not 8 non-zero bytes"
    return None


def decode_request(request) -> DecodedBatch:
    """Flatten an ``ExportTraceServiceRequest`` message into a :class:`DecodedBatch`.

    Never raises for content problems: unstorable spans are counted and explained instead.
    """
    problems = _Problems()
    # Per resource / per scope columns (expanded to rows with take()).
    res_attrs, scope_attrs = _MapBuilder(), _MapBuilder()
    res_service, res_schema, res_dropped = [], [], []
    sc_name, sc_version, sc_schema, sc_dropped = [], [], [], []
    res_idx, sc_idx = [], []
    # Per span columns.
    ts, dur, tid, sid, pid, tstate, names, kinds = [], [], [], [], [], [], [], []
    st_code, st_msg, flags, d_attrs, d_events, d_links = [], [], [], [], [], []
    span_attrs = _MapBuilder()
    ev_offsets, ev_ts, ev_name, ev_dropped, ev_attrs = [0], [], [], [], _MapBuilder()
    ln_offsets, ln_tid, ln_sid, ln_state, ln_flags, ln_dropped, ln_attrs = (
        [0],
        [],
        [],
        [],
        [],
        [],
        _MapBuilder(),
    )
    kind_names, status_names = SPAN_KINDS, STATUS_CODES
    n_kinds, n_codes = len(SPAN_KINDS), len(STATUS_CODES)

    for r_i, rs in enumerate(request.resource_spans):
        resource = rs.resource
        service = "unknown_service"
        for kv in resource.attributes:
            if kv.key == "service.name":
                service = render_value(kv.value)
                break
        extra = res_attrs.add(resource.attributes, problems, f"resource {service!r}")
        res_service.append(service)
        res_schema.append(rs.schema_url)
        res_dropped.append(resource.dropped_attributes_count + extra)
        for ss in rs.scope_spans:
            scope = ss.scope
            s_i = len(sc_name)
            sc_name.append(scope.name)
            sc_version.append(scope.version)
            sc_schema.append(ss.schema_url)
            extra = scope_attrs.add(scope.attributes, problems, f"scope {scope.name!r}")
            sc_dropped.append(scope.dropped_attributes_count + extra)
            for span in ss.spans:
                trace_id, span_id = span.trace_id, span.span_id
                bad = _bad_id(trace_id, span_id) if len(trace_id) != 16 or len(span_id) != 8 else None
                if bad is None and (trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN):
                    bad = _bad_id(trace_id, span_id)
                if bad is not None:
                    problems.rejected += 1
                    problems.add(f"span {span.name!r} rejected: {bad}")
                    continue
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                if start > _MAX_NS or end > _MAX_NS:
                    problems.rejected += 1
                    problems.add(f"span {span.name!r} rejected: start/end time beyond year 2262 (int64 ns)")
                    continue
                res_idx.append(r_i)
                sc_idx.append(s_i)
                ts.append(start)
                dur.append(end - start)
                tid.append(trace_id.hex())
                sid.append(span_id.hex())
                pid.append(span.parent_span_id.hex())
                tstate.append(span.trace_state)
                names.append(span.name)
                k = span.kind
                kinds.append(kind_names[k] if 0 <= k < n_kinds else "Unspecified")
                status = span.status
                c = status.code
                st_code.append(status_names[c] if 0 <= c < n_codes else "Unset")
                st_msg.append(status.message)
                flags.append(span.flags)
                extra = span_attrs.add(span.attributes, problems, f"span {span.name!r}")
                d_attrs.append(span.dropped_attributes_count + extra)
                d_events.append(span.dropped_events_count)
                d_links.append(span.dropped_links_count)
                events = span.events
                if events:
                    for ev in events:
                        ev_ts.append(ev.time_unix_nano)
                        ev_name.append(ev.name)
                        extra = ev_attrs.add(ev.attributes, problems, f"event {ev.name!r}")
                        ev_dropped.append(ev.dropped_attributes_count + extra)
                ev_offsets.append(len(ev_ts))
                links = span.links
                if links:
                    for ln in links:
                        ln_tid.append(ln.trace_id.hex())
                        ln_sid.append(ln.span_id.hex())
                        ln_state.append(ln.trace_state)
                        ln_flags.append(ln.flags)
                        extra = ln_attrs.add(ln.attributes, problems, f"link of span {span.name!r}")
                        ln_dropped.append(ln.dropped_attributes_count + extra)
                ln_offsets.append(len(ln_tid))

    n = len(ts)
    if n == 0:
        return DecodedBatch(None, 0, problems.rejected, problems.messages, problems.more)
    schema = arrow_schema()
    u32 = pa.uint32()
    s = pa.string()
    r_take = pa.array(res_idx, pa.int32())
    s_take = pa.array(sc_idx, pa.int32())
    events_type = schema.field("Events").type
    links_type = schema.field("Links").type
    events = pa.ListArray.from_arrays(
        pa.array(ev_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [
                pa.array(ev_ts, pa.timestamp("ns")),
                pa.array(ev_name, s),
                ev_attrs.array(),
                pa.array(ev_dropped, u32),
            ],
            fields=list(events_type.value_type),
        ),
        type=events_type,
    )
    links = pa.ListArray.from_arrays(
        pa.array(ln_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [
                pa.array(ln_tid, s),
                pa.array(ln_sid, s),
                pa.array(ln_state, s),
                ln_attrs.array(),
                pa.array(ln_dropped, u32),
                pa.array(ln_flags, u32),
            ],
            fields=list(links_type.value_type),
        ),
        type=links_type,
    )
    columns = {
        "Timestamp": pa.array(ts, pa.timestamp("ns")),
        "TraceId": pa.array(tid, s),
        "SpanId": pa.array(sid, s),
        "ParentSpanId": pa.array(pid, s),
        "TraceState": pa.array(tstate, s),
        "SpanName": pa.array(names, s),
        "SpanKind": pa.array(kinds, s),
        "ServiceName": pa.array(res_service, s).take(r_take),
        "ResourceAttributes": res_attrs.array().take(r_take),
        "ResourceSchemaUrl": pa.array(res_schema, s).take(r_take),
        "ResourceDroppedAttributesCount": pa.array(res_dropped, u32).take(r_take),
        "ScopeName": pa.array(sc_name, s).take(s_take),
        "ScopeVersion": pa.array(sc_version, s).take(s_take),
        "ScopeAttributes": scope_attrs.array().take(s_take),
        "ScopeSchemaUrl": pa.array(sc_schema, s).take(s_take),
        "ScopeDroppedAttributesCount": pa.array(sc_dropped, u32).take(s_take),
        "SpanAttributes": span_attrs.array(),
        "Duration": pa.array(dur, pa.int64()),
        "StatusCode": pa.array(st_code, s),
        "StatusMessage": pa.array(st_msg, s),
        "Flags": pa.array(flags, u32),
        "DroppedAttributesCount": pa.array(d_attrs, u32),
        "DroppedEventsCount": pa.array(d_events, u32),
        "DroppedLinksCount": pa.array(d_links, u32),
        "Events": events,
        "Links": links,
    }
    table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
    return DecodedBatch(table, n, problems.rejected, problems.messages, problems.more)
