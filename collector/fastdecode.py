"""Protobuf bodies -> batches, in three tiers that give the same :class:`~.batch.DecodedBatch`.

1. :mod:`.cdecode`: the C column decoder, for the common shape of a request.
2. This module's *lazy mirror* messages, for everything else that protobuf accepts. Reading every
   ``KeyValue`` of every span through the protobuf Python API costs about 10 µs per span (a wrapper
   object per key/value/AnyValue), so the body is parsed with mirror messages that have the same
   field numbers and wire types as the OTLP ones, except that
   ``Span.attributes``/``events``/``links``/``status`` and ``ResourceSpans.resource``/``ScopeSpans.scope``
   are declared (repeated) ``bytes``; the singular message fields among them are joined before
   parsing, since protobuf merges a singular message given twice and concatenated encodings parse
   as that merge. upb hands each encoded ``KeyValue`` back as a ``bytes`` object, and
   :mod:`.attrcolumns` renders each distinct one once.
3. :func:`~.decode.decode_request` (the reference decoder over the OTLP classes), for requests that
   need the limit rules (more than ``MAX_ATTRIBUTES`` attributes, a repeated key, a value over
   ``MAX_VALUE_CHARS``): it applies and explains them.

The tiers are tested against each other (tests/test_collector_fastdecode.py).
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from . import cdecode
from .attrcolumns import Interner, NeedsSlowPath, add_resource, add_scope, span_attributes
from .attributes import MapBuilder, Problems
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

#: Encoded ``Status`` -> (code, message); emptied when it reaches this many entries.
_STATUS_CACHE_MAX = 65536
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
        if len(_status_cache) >= _STATUS_CACHE_MAX:
            _status_cache.clear()
        hit = _status_cache[encoded] = (status.code, status.message)
    return hit


def decode_protobuf(body: bytes) -> DecodedBatch:
    """Decode a protobuf ``ExportTraceServiceRequest`` body into a :class:`~.decode.DecodedBatch`.

    Three tiers, same result: the C column decoder (:mod:`.cdecode`) for the common shape (no
    events or links, storable ids and times, valid UTF-8); otherwise the mirror messages above;
    and :func:`~.decode.decode_request` when a limit rule applies.
    Raises ``google.protobuf.message.DecodeError`` for a body (or an embedded attribute, resource,
    scope, event or link) that is not valid protobuf or holds a string that is not UTF-8, exactly
    as parsing with ``ExportTraceServiceRequest`` would.
    """
    try:
        batch = cdecode.decode(body)
        if batch is not None:
            return batch
        return _decode(LazyRequest.FromString(body), body)
    except NeedsSlowPath:
        return decode_request(ExportTraceServiceRequest.FromString(body))


def _decode(request, body: bytes) -> DecodedBatch:
    problems = Problems()
    res_idx, sc_idx = [], []
    ts, end, tid, sid, pid, tstate, names, kinds = [], [], [], [], [], [], [], []
    st_code, st_msg, flags, d_attrs, d_events, d_links = [], [], [], [], [], []
    ev_offsets, ev, ln_offsets, ln = new_event_link_columns()
    interner = Interner()
    entry_idx: list = []  # per scope: int32 arrays of indexes into the interner, and counts
    counts: list = []
    intern = interner.__getitem__
    events_view = None

    rc = ResourceScopeColumns([], [], [], MapBuilder(), [], [], [], [], MapBuilder())
    for r_pos, rs in enumerate(request.resource_spans):
        r_i = add_resource(rc, b"".join(rs.resource), rs.schema_url, problems)
        for s_pos, ss in enumerate(rs.scope_spans):
            s_i = add_scope(rc, b"".join(ss.scope), ss.schema_url, problems)
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
        span_attributes(
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
