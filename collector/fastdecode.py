"""Fast path for OTLP/protobuf bodies: parse with *lazy mirror* messages and cache attributes.

Reading every ``KeyValue`` of every span through the protobuf Python API costs about 10 µs per
span (a wrapper object per key/value/AnyValue). Attributes repeat a lot (``db.system``,
``db.statement``, ``net.peer.name`` ...), so this module parses the body with mirror messages
that have the same field numbers and wire types as the OTLP ones, except that
``Span.attributes``/``events``/``links``/``status`` and ``ResourceSpans.resource``/``ScopeSpans.scope``
are declared (repeated) ``bytes``; the singular message fields among them are joined before parsing,
since protobuf merges a singular message given twice and concatenated encodings parse as that
merge. upb hands each encoded ``KeyValue`` back as a ``bytes`` object. Each distinct
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
from .batch import (
    DecodedBatch,
    ResourceScopeColumns,
    SpanColumns,
    build_batch,
    events_and_links,
    new_event_link_columns,
)
from .decode import decode_request

_F = descriptor_pb2.FieldDescriptorProto
_BYTES, _STRING, _UINT32, _INT32 = _F.TYPE_BYTES, _F.TYPE_STRING, _F.TYPE_UINT32, _F.TYPE_INT32
_FIXED32, _FIXED64, _MESSAGE = _F.TYPE_FIXED32, _F.TYPE_FIXED64, _F.TYPE_MESSAGE
_REPEATED = _F.LABEL_REPEATED

#: Mirror messages: (name, [(field, number, type, repeated, message type)]). Enums are read as
#: int32 (same varint encoding; proto3 enums are open, unknown values are kept as numbers).
MIRROR = {
    "Request": [("resource_spans", 1, _MESSAGE, True, "ResourceSpans")],
    "ResourceSpans": [
        ("resource", 1, _BYTES, True, None),
        ("scope_spans", 2, _MESSAGE, True, "ScopeSpans"),
        ("schema_url", 3, _STRING, False, None),
    ],
    "ScopeSpans": [
        ("scope", 1, _BYTES, True, None),
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
        ("status", 15, _BYTES, True, None),
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


def _status(occurrences) -> tuple[int, str]:
    """(code, message) of a span's encoded ``Status`` (cached; ``DecodeError`` if invalid).

    ``occurrences``: every encoding of the field on the wire (a singular message field given twice
    is merged by protobuf, and concatenated encodings parse as exactly that merge).
    """
    if not occurrences:
        return 0, ""
    encoded = occurrences[0] if len(occurrences) == 1 else b"".join(occurrences)
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


def _span_attributes(
    distinct: list[bytes], idx: np.ndarray, n_attrs: np.ndarray, rows: tuple | None = None
) -> pa.DictionaryArray:
    """The ``SpanAttributes`` column (``_NeedsSlowPath`` when a limit rule applies).

    ``distinct``: the request's distinct encoded ``KeyValue`` s; ``idx`` (int32): each span's
    attributes as positions in ``distinct``, span after span; ``n_attrs`` (int32): attributes per
    span. Identical attribute lists (same encoded KeyValues in the same order) share one dictionary
    entry, so DuckDB converts and checks each distinct map once; ``rows`` = ``(row_ids, first_rows)``
    when the caller already grouped them (the C decoder does), else they are grouped here.
    """
    keys, values = _distinct_kvs(distinct)
    if max(map(len, values), default=0) > MAX_VALUE_CHARS:
        raise _NeedsSlowPath
    if n_attrs.size and int(n_attrs.max()) > MAX_ATTRIBUTES:
        raise _NeedsSlowPath
    offsets = np.zeros(n_attrs.size + 1, np.int32)
    np.cumsum(n_attrs, out=offsets[1:])
    row_ids, first_rows = rows if rows is not None else _group_rows(idx, offsets)
    lengths = n_attrs[first_rows]
    d_offsets = np.zeros(len(first_rows) + 1, np.int32)
    np.cumsum(lengths, out=d_offsets[1:])
    # the entries of each group's representative row, group after group
    starts = offsets[first_rows]
    take = np.repeat(starts - d_offsets[:-1], lengths) + np.arange(d_offsets[-1], dtype=np.int64)
    d_idx = idx[take]
    if d_idx.size:
        # A repeated key in one span (forbidden by OTLP, refused by DuckDB MAPs): slow path.
        key_ids = _Interner()
        key_of_kv = np.fromiter(map(key_ids.__getitem__, keys), np.int64, len(keys))
        n_keys = len(key_ids)
        pairs = np.repeat(np.arange(len(first_rows), dtype=np.int64), lengths) * n_keys + key_of_kv[d_idx]
        if len(first_rows) * n_keys <= _BINCOUNT_MAX:
            repeated = int(np.bincount(pairs).max()) > 1
        else:
            repeated = np.unique(pairs).size != pairs.size
        if repeated:
            raise _NeedsSlowPath
    idx_a = pa.array(d_idx, pa.int32())
    maps = pa.MapArray.from_arrays(
        pa.array(d_offsets, pa.int32()),
        pa.array(keys, pa.string()).take(idx_a),
        pa.array(values, pa.string()).take(idx_a),
    )
    return pa.DictionaryArray.from_arrays(pa.array(row_ids, pa.int32()), maps)


def _group_rows(idx: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row id per span, one span per row id) for equal attribute lists (``idx[offsets[i]:offsets[i+1]]``)."""
    row_bytes = idx.tobytes()
    bounds = (offsets * 4).tolist()
    distinct = _Interner()
    row_ids = np.fromiter(
        map(distinct.__getitem__, map(row_bytes.__getitem__, map(slice, bounds[:-1], bounds[1:]))),
        np.int32,
        len(offsets) - 1,
    )
    first_rows = np.zeros(len(distinct), np.int64)
    first_rows[row_ids] = np.arange(len(offsets) - 1)  # any row of a group will do: they are equal
    return row_ids, first_rows


def decode_protobuf(body: bytes) -> DecodedBatch:
    """Decode a protobuf ``ExportTraceServiceRequest`` body into a :class:`~.decode.DecodedBatch`.

    Three tiers, same result: the C column decoder (:mod:`._otlpfast`) for the common shape (no
    events or links, storable ids and times, valid UTF-8); otherwise the mirror messages above;
    and :func:`~.decode.decode_request` when a limit rule applies.
    Raises ``google.protobuf.message.DecodeError`` for a body (or an embedded attribute, resource,
    scope, event or link) that is not valid protobuf or holds a string that is not UTF-8, exactly
    as parsing with ``ExportTraceServiceRequest`` would.
    """
    try:
        columns = _otlpfast.decode(body) if _otlpfast is not None else None
        if columns is not None:
            return _from_columns(columns)
        return _decode(LazyRequest.FromString(body), body)
    except _NeedsSlowPath:
        return decode_request(ExportTraceServiceRequest.FromString(body))


def _add_resource(rc: ResourceScopeColumns, encoded: bytes, schema_url: str, problems: Problems) -> int:
    """Append an encoded ``Resource`` to ``rc``; returns its index (``DecodeError`` if invalid)."""
    resource = Resource.FromString(encoded)
    service = "unknown_service"
    for kv in resource.attributes:
        if kv.key == "service.name":
            service = render_value(kv.value)
            break
    rc.res_attrs.add(resource.attributes, problems, ("resource of", service))
    rc.res_service.append(service)
    rc.res_schema.append(schema_url)
    rc.res_dropped.append(resource.dropped_attributes_count)
    return len(rc.res_service) - 1


def _add_scope(rc: ResourceScopeColumns, encoded: bytes, schema_url: str, problems: Problems) -> int:
    """Append an encoded ``InstrumentationScope`` to ``rc``; returns its index."""
    scope = InstrumentationScope.FromString(encoded)
    rc.sc_name.append(scope.name)
    rc.sc_version.append(scope.version)
    rc.sc_schema.append(schema_url)
    rc.scope_attrs.add(scope.attributes, problems, ("scope", scope))
    rc.sc_dropped.append(scope.dropped_attributes_count)
    return len(rc.sc_name) - 1


try:
    from . import _otlpfast  # built from _otlpfast.c; optional (no C compiler: the paths above)
except ImportError:  # pragma: no cover - depends on the build
    _otlpfast = None

#: The C decoder's per-span record (``struct fixed_rec`` in _otlpfast.c, packed, little-endian).
_FIXED_DTYPE = np.dtype(
    [
        ("start", "<u8"),
        ("end", "<u8"),
        ("kind", "<i4"),
        ("flags", "<u4"),
        ("dropped_attrs", "<u4"),
        ("dropped_events", "<u4"),
        ("dropped_links", "<u4"),
        ("status_code", "<i4"),
        ("res_idx", "<i4"),
        ("scope_idx", "<i4"),
    ]
)
if _otlpfast is not None and _FIXED_DTYPE.itemsize != _otlpfast.FIXED_RECORD:  # pragma: no cover
    _otlpfast = None


def _strings(n: int, offsets: bytes, data: bytes) -> pa.StringArray:
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _hex_ids(n: int, data: bytes, width: int) -> pa.StringArray:
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _from_columns(columns: tuple) -> DecodedBatch:
    """The :class:`~.decode.DecodedBatch` of the C decoder's output (see ``_otlpfast.c``)."""
    (n, fixed, tid, sid, pid, names, tstate, smsg, attr_idx, attr_counts, kvs, resources, scopes) = columns[
        :13
    ]
    rows = np.frombuffer(columns[13], np.int32), np.frombuffer(columns[14], np.int32)
    problems = Problems()
    rc = ResourceScopeColumns([], [], [], MapBuilder(), [], [], [], [], MapBuilder())
    for encoded, schema_url in resources:
        _add_resource(rc, encoded, schema_url, problems)
    for encoded, schema_url in scopes:
        _add_scope(rc, encoded, schema_url, problems)
    rec = np.frombuffer(fixed, _FIXED_DTYPE)

    def col(name):
        return np.ascontiguousarray(rec[name])

    ev_offsets, ev, ln_offsets, ln = new_event_link_columns()
    no_items = np.zeros(n + 1, np.int32)
    return build_batch(
        problems,
        SpanColumns(
            col("start"),
            col("end"),
            _hex_ids(n, tid, 32),
            _hex_ids(n, sid, 16),
            _strings(n, *pid),
            _strings(n, *tstate),
            _strings(n, *names),
            col("kind"),
            col("status_code"),
            _strings(n, *smsg),
            col("flags"),
            col("dropped_attrs"),
            col("dropped_events"),
            col("dropped_links"),
            col("res_idx"),
            col("scope_idx"),
            no_items,
            ev,
            no_items,
            ln,
        ),
        _span_attributes(kvs, np.frombuffer(attr_idx, np.int32), np.frombuffer(attr_counts, np.int32), rows),
        None,
        rc,
        prechecked=True,
    )


def _decode(request, body: bytes) -> DecodedBatch:
    problems = Problems()
    res_idx, sc_idx = [], []
    ts, end, tid, sid, pid, tstate, names, kinds = [], [], [], [], [], [], [], []
    st_code, st_msg, flags, d_attrs, d_events, d_links = [], [], [], [], [], []
    ev_offsets, ev, ln_offsets, ln = new_event_link_columns()
    interner = _Interner()
    entry_idx: list = []  # per scope: int32 arrays of indexes into the interner, and counts
    counts: list = []
    intern = interner.__getitem__
    events_view = None

    rc = ResourceScopeColumns([], [], [], MapBuilder(), [], [], [], [], MapBuilder())
    for r_pos, rs in enumerate(request.resource_spans):
        r_i = _add_resource(rc, b"".join(rs.resource), rs.schema_url, problems)
        for s_pos, ss in enumerate(rs.scope_spans):
            s_i = _add_scope(rc, b"".join(ss.scope), ss.schema_url, problems)
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
        _span_attributes(
            list(interner),
            np.concatenate(entry_idx) if entry_idx else np.zeros(0, np.int32),
            np.concatenate(counts) if counts else np.zeros(0, np.int32),
        ),
        None,
        rc,
    )


class _Named:
    """Stands in for a span in messages (``events_and_links`` reads ``.name``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def _add_events_and_links(name: str, events, links, problems: Problems, ev, ln) -> None:
    events_and_links(_Named(name), events, links, problems, ev, ln)
