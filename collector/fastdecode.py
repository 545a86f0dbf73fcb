"""Fast path for OTLP/protobuf bodies: parse with *lazy mirror* messages and cache attributes.

Reading every ``KeyValue`` of every span through the protobuf Python API costs about 10 µs per
span (a wrapper object per key/value/AnyValue). Attributes repeat a lot (``db.system``,
``db.statement``, ``net.peer.name`` ...), so this module parses the body with mirror messages
that have the same field numbers and wire types as the OTLP ones, except that
``Span.attributes``/``events``/``links`` and ``ResourceSpans.resource``/``ScopeSpans.scope`` are
declared ``bytes``: upb hands each encoded ``KeyValue`` back as a ``bytes`` object. Each distinct
encoded ``KeyValue`` is decoded (with the real ``KeyValue`` class, so invalid UTF-8 and truncation
still raise ``DecodeError``) and rendered once, then found again by a dict lookup; the
``SpanAttributes`` column is built with ``take`` over the distinct keys and values.

The result is the same :class:`~.decode.DecodedBatch` as :func:`~.decode.decode_request` gives.
Requests that need the limit rules (more than ``MAX_ATTRIBUTES`` attributes, a repeated key, a
value over ``MAX_VALUE_CHARS``) are handed to :func:`~.decode.decode_request` whole, which
explains them; both paths are tested against each other (tests/test_collector_fastdecode.py).
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np
import pyarrow as pa
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .anyvalue import render_value
from .attributes import MAX_ATTRIBUTES, MAX_VALUE_CHARS, MapBuilder, Problems
from .decode import (
    DecodedBatch,
    ResourceScopeColumns,
    SpanColumns,
    build_batch,
    decode_request,
    events_and_links,
    new_event_link_columns,
)

_F = descriptor_pb2.FieldDescriptorProto
_BYTES, _STRING, _UINT32, _INT32 = _F.TYPE_BYTES, _F.TYPE_STRING, _F.TYPE_UINT32, _F.TYPE_INT32
_FIXED32, _FIXED64, _MESSAGE = _F.TYPE_FIXED32, _F.TYPE_FIXED64, _F.TYPE_MESSAGE
_REPEATED = _F.LABEL_REPEATED

#: Mirror messages: (name, [(field, number, type, repeated, message type)]). Enums are read as
#: int32 (same varint encoding; proto3 enums are open, unknown values are kept as numbers).
MIRROR = {
    "Request": [("resource_spans", 1, _MESSAGE, True, "ResourceSpans")],
    "ResourceSpans": [
        ("resource", 1, _BYTES, False, None),
        ("scope_spans", 2, _MESSAGE, True, "ScopeSpans"),
        ("schema_url", 3, _STRING, False, None),
    ],
    "ScopeSpans": [
        ("scope", 1, _BYTES, False, None),
        ("spans", 2, _MESSAGE, True, "Span"),
        ("schema_url", 3, _STRING, False, None),
    ],
    "Span": [
        ("trace_id", 1, _BYTES, False, None),
        ("span_id", 2, _BYTES, False, None),
        ("trace_state", 3, _STRING, False, None),
        ("parent_span_id", 4, _BYTES, False, None),
        ("flags", 16, _FIXED32, False, None),
        ("name", 5, _STRING, False, None),
        ("kind", 6, _INT32, False, None),
        ("start_time_unix_nano", 7, _FIXED64, False, None),
        ("end_time_unix_nano", 8, _FIXED64, False, None),
        ("attributes", 9, _BYTES, True, None),
        ("dropped_attributes_count", 10, _UINT32, False, None),
        ("last_event", 11, _BYTES, False, None),
        ("dropped_events_count", 12, _UINT32, False, None),
        ("last_link", 13, _BYTES, False, None),
        ("dropped_links_count", 14, _UINT32, False, None),
        ("status", 15, _BYTES, False, None),
    ],
}
#: A second view of the same body, parsed only when some span has events or links.
EVENTS_MIRROR = {
    "Request": [("resource_spans", 1, _MESSAGE, True, "ResourceSpans")],
    "ResourceSpans": [("scope_spans", 2, _MESSAGE, True, "ScopeSpans")],
    "ScopeSpans": [("spans", 2, _MESSAGE, True, "Span")],
    "Span": [("events", 11, _BYTES, True, None), ("links", 13, _BYTES, True, None)],
}


def _mirror_classes(mirror: dict, package: str) -> dict:
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}.proto", package=package, syntax="proto3"
    )
    for name, fields in mirror.items():
        message = file.message_type.add(name=name)
        for field_name, number, ftype, repeated, type_name in fields:
            f = message.field.add(name=field_name, number=number, type=ftype)
            f.label = _REPEATED if repeated else _F.LABEL_OPTIONAL
            if type_name:
                f.type_name = f".{package}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in mirror
    }


LazyRequest = _mirror_classes(MIRROR, "tracehound.lazy_otlp")["Request"]
EventsRequest = _mirror_classes(EVENTS_MIRROR, "tracehound.lazy_otlp_events")["Request"]
#: Per-span fields read in one C call per span (then transposed into columns).
_SPAN_FIELDS = (
    "start_time_unix_nano",
    "end_time_unix_nano",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "name",
    "kind",
    "flags",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "status",
    "attributes",
    "last_event",
    "last_link",
)
_get_span_fields = attrgetter(*_SPAN_FIELDS)
#: Largest (spans x distinct keys) table for the repeated-key check by ``bincount``.
_BINCOUNT_MAX = 1 << 22

#: Encoded ``KeyValue`` -> (key, rendered value); emptied when it reaches this many entries.
KV_CACHE_MAX = 65536
_kv_cache: dict[bytes, tuple[str, str]] = {}
_parse_kv = KeyValue.FromString
_parse_event = Span.Event.FromString
_parse_link = Span.Link.FromString
_status_cache: dict[bytes, tuple[int, str]] = {}


def _status(encoded: bytes) -> tuple[int, str]:
    """(code, message) of an encoded ``Status`` (cached; ``DecodeError`` if invalid)."""
    hit = _status_cache.get(encoded)
    if hit is None:
        status = Status.FromString(encoded)
        if len(_status_cache) >= KV_CACHE_MAX:
            _status_cache.clear()
        hit = _status_cache[encoded] = (status.code, status.message)
    return hit


class _Interner(dict):
    """bytes -> first-seen index (``interner[b]`` adds unseen keys)."""

    __slots__ = ()

    def __missing__(self, key):
        index = self[key] = len(self)
        return index


class _NeedsSlowPath(Exception):
    """A limit rule applies: decode the request with :func:`~.decode.decode_request` instead."""


def _distinct_kvs(encoded: list[bytes]) -> tuple[list[str], list[str]]:
    """Keys and rendered values of distinct encoded ``KeyValue`` s (``DecodeError`` if invalid)."""
    cache = _kv_cache
    if len(cache) + len(encoded) > KV_CACHE_MAX:
        cache.clear()
    keys, values = [], []
    for b in encoded:
        hit = cache.get(b)
        if hit is None:
            kv = _parse_kv(b)
            hit = cache[b] = (kv.key, render_value(kv.value))
        keys.append(hit[0])
        values.append(hit[1])
    return keys, values


def _span_attributes(interner: _Interner, entry_idx: list, counts: list) -> pa.DictionaryArray:
    """The ``SpanAttributes`` column from per-scope index arrays (``_NeedsSlowPath`` on a limit)."""
    keys, values = _distinct_kvs(list(interner))
    if max(map(len, values), default=0) > MAX_VALUE_CHARS:
        raise _NeedsSlowPath
    n_attrs = np.concatenate(counts) if counts else np.zeros(0, np.int32)
    if n_attrs.size and int(n_attrs.max()) > MAX_ATTRIBUTES:
        raise _NeedsSlowPath
    offsets = np.zeros(n_attrs.size + 1, np.int32)
    np.cumsum(n_attrs, out=offsets[1:])
    idx = np.concatenate(entry_idx) if entry_idx else np.zeros(0, np.int32)
    if idx.size:
        # A repeated key in one span (forbidden by OTLP, refused by DuckDB MAPs): slow path.
        key_ids = _Interner()
        key_of_kv = np.fromiter(map(key_ids.__getitem__, keys), np.int64, len(keys))
        n_keys = len(key_ids)
        owners = np.repeat(np.arange(n_attrs.size, dtype=np.int64), n_attrs)
        pairs = owners * n_keys + key_of_kv[idx]
        if n_attrs.size * n_keys <= _BINCOUNT_MAX:
            repeated = int(np.bincount(pairs).max()) > 1
        else:
            repeated = np.unique(pairs).size != pairs.size
        if repeated:
            raise _NeedsSlowPath
    # Identical attribute lists (same encoded KeyValues in the same order) share one dictionary
    # entry: DuckDB converts and checks each distinct map once.
    row_bytes = idx.tobytes()
    bounds = (offsets * 4).tolist()
    distinct = _Interner()
    row_ids = np.fromiter(
        map(distinct.__getitem__, map(row_bytes.__getitem__, map(slice, bounds[:-1], bounds[1:]))),
        np.int32,
        n_attrs.size,
    )
    first_rows = np.zeros(len(distinct), np.int64)
    first_rows[row_ids] = np.arange(n_attrs.size)  # any row of a group will do: they are equal
    lengths = n_attrs[first_rows]
    d_offsets = np.zeros(len(distinct) + 1, np.int32)
    np.cumsum(lengths, out=d_offsets[1:])
    # the entries of each group's representative row, group after group
    starts = offsets[first_rows]
    take = np.repeat(starts - d_offsets[:-1], lengths) + np.arange(d_offsets[-1], dtype=np.int64)
    idx_a = pa.array(idx[take])
    maps = pa.MapArray.from_arrays(
        pa.array(d_offsets),
        pa.array(keys, pa.string()).take(idx_a),
        pa.array(values, pa.string()).take(idx_a),
    )
    return pa.DictionaryArray.from_arrays(pa.array(row_ids), maps)


def decode_protobuf(body: bytes) -> DecodedBatch:
    """Decode a protobuf ``ExportTraceServiceRequest`` body into a :class:`~.decode.DecodedBatch`.

    Raises ``google.protobuf.message.DecodeError`` for a body (or an embedded attribute, resource,
    scope, event or link) that is not valid protobuf or holds a string that is not UTF-8, exactly
    as parsing with ``ExportTraceServiceRequest`` would.
    """
    request = LazyRequest.FromString(body)
    try:
        return _decode(request, body)
    except _NeedsSlowPath:
        return decode_request(ExportTraceServiceRequest.FromString(body))


def _decode(request, body: bytes) -> DecodedBatch:
    problems = Problems()
    res_attrs, scope_attrs = MapBuilder(), MapBuilder()
    res_service, res_schema, res_dropped = [], [], []
    sc_name, sc_version, sc_schema, sc_dropped = [], [], [], []
    res_idx, sc_idx = [], []
    ts, end, tid, sid, pid, tstate, names, kinds = [], [], [], [], [], [], [], []
    st_code, st_msg, flags, d_attrs, d_events, d_links = [], [], [], [], [], []
    ev_offsets, ev, ln_offsets, ln = new_event_link_columns()
    interner = _Interner()
    entry_idx: list = []  # per scope: int32 arrays of indexes into the interner, and counts
    counts: list = []
    intern = interner.__getitem__
    events_view = None

    for r_pos, rs in enumerate(request.resource_spans):
        resource = Resource.FromString(rs.resource)
        service = "unknown_service"
        for kv in resource.attributes:
            if kv.key == "service.name":
                service = render_value(kv.value)
                break
        r_i = len(res_service)
        res_attrs.add(resource.attributes, problems, ("resource of", service))
        res_service.append(service)
        res_schema.append(rs.schema_url)
        res_dropped.append(resource.dropped_attributes_count)
        for s_pos, ss in enumerate(rs.scope_spans):
            scope = InstrumentationScope.FromString(ss.scope)
            s_i = len(sc_name)
            sc_name.append(scope.name)
            sc_version.append(scope.version)
            sc_schema.append(ss.schema_url)
            scope_attrs.add(scope.attributes, problems, ("scope", scope))
            sc_dropped.append(scope.dropped_attributes_count)
            spans = ss.spans
            n = len(spans)
            if not n:
                continue
            res_idx += [r_i] * n
            sc_idx += [s_i] * n
            (t0, t1, t_id, s_id, p_id, t_st, nm, kd, fl, da, de, dl, st, attrs, e_last, l_last) = zip(
                *map(_get_span_fields, spans), strict=True
            )
            ts += t0
            end += t1
            tid += map(bytes.hex, t_id)
            sid += map(bytes.hex, s_id)
            pid += map(bytes.hex, p_id)
            tstate += t_st
            names += nm
            kinds += kd
            flags += fl
            d_attrs += da
            d_events += de
            d_links += dl
            if any(st):
                codes_msgs = list(map(_status, st))
                st_code += [c for c, _ in codes_msgs]
                st_msg += [m for _, m in codes_msgs]
            else:
                st_code += [0] * n
                st_msg += [""] * n
            counts.append(np.fromiter(map(len, attrs), np.int32, n))
            entry_idx.append(np.fromiter(map(intern, chain.from_iterable(attrs)), np.int32))
            if any(e_last) or any(l_last):
                if events_view is None:
                    events_view = EventsRequest.FromString(body)
                view = events_view.resource_spans[r_pos].scope_spans[s_pos].spans
                for k in range(n):
                    evs, lns = view[k].events, view[k].links
                    if evs or lns:
                        _add_events_and_links(
                            names[-n + k],
                            [_parse_event(b) for b in evs],
                            [_parse_link(b) for b in lns],
                            problems,
                            ev,
                            ln,
                        )
                    ev_offsets.append(len(ev[0]))
                    ln_offsets.append(len(ln[0]))
            else:
                ev_offsets += [len(ev[0])] * n
                ln_offsets += [len(ln[0])] * n
    return build_batch(
        problems,
        SpanColumns(
            ts,
            end,
            tid,
            sid,
            pid,
            tstate,
            names,
            kinds,
            st_code,
            st_msg,
            flags,
            d_attrs,
            d_events,
            d_links,
            res_idx,
            sc_idx,
            ev_offsets,
            ev,
            ln_offsets,
            ln,
        ),
        _span_attributes(interner, entry_idx, counts),
        [0] * len(ts),
        ResourceScopeColumns(
            res_service,
            res_schema,
            res_dropped,
            res_attrs,
            sc_name,
            sc_version,
            sc_schema,
            sc_dropped,
            scope_attrs,
        ),
    )


class _Named:
    """Stands in for a span in messages (``events_and_links`` reads ``.name``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def _add_events_and_links(name: str, events, links, problems: Problems, ev, ln) -> None:
    events_and_links(_Named(name), events, links, problems, ev, ln)
