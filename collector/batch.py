"""Decoded span columns -> the Arrow batch the writer inserts into ``otel_traces``.

Both decoders (:mod:`.decode`, the reference one over the OTLP classes, and :mod:`.fastdecode`)
gather a request's fields into :class:`SpanColumns` and :class:`ResourceScopeColumns`;
:func:`build_batch` checks ids and times (vectorised with ``pyarrow.compute``), explains the spans
that cannot be stored, and makes the :class:`DecodedBatch`; :func:`combine` turns several batches
into the one table of an insert (:data:`INSERT_SQL`). The storage rules are in :mod:`.decode`'s
docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .attributes import MapBuilder, Problems
from .schema import OTEL_TRACES_COLUMNS
from .store import otel_traces_arrow_schema

SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
_KIND_NAMES = pa.array(SPAN_KINDS)
_STATUS_NAMES = pa.array(STATUS_CODES)
_MAX_NS = (1 << 63) - 1
_ZERO_U64 = pa.scalar(0, pa.uint64())
_MAX_NS_U64 = pa.scalar(_MAX_NS, pa.uint64())  # an int64 scalar against uint64 raises ArrowInvalid
_ZERO_TRACE_HEX = "0" * 32
_ZERO_SPAN_HEX = "0" * 16
# pyarrow.compute converts a Python scalar argument on every call, and that conversion tries
# ``import dateutil`` each time (a failed import is not cached: ~30 µs of file system lookups),
# so every constant handed to pc.* is an Arrow scalar made once.
_ZERO_TRACE_HEX_S = pa.scalar(_ZERO_TRACE_HEX)
_ZERO_SPAN_HEX_S = pa.scalar(_ZERO_SPAN_HEX)
_I32_CONST = {n: pa.scalar(n, pa.int32()) for n in (0, 2, 5, 16, 32)}

_TS = pa.timestamp("ns")
_U32 = pa.uint32()
_STR = pa.string()
_I32 = pa.int32()

RESOURCE_COLUMNS = (
    "ServiceName",
    "ResourceAttributes",
    "ResourceSchemaUrl",
    "ResourceDroppedAttributesCount",
)
SCOPE_COLUMNS = (
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "ScopeSchemaUrl",
    "ScopeDroppedAttributesCount",
)


#: Inserts the Arrow table ``_th_spans`` made by :func:`combine` (found by DuckDB's replacement scan).
INSERT_SQL = "INSERT INTO otel_traces SELECT * FROM _th_spans"


@dataclass
class DecodedBatch:
    """The storable spans of one request and what happened to the others.

    ``spans`` / ``resources`` / ``scopes`` are Arrow tables (``None`` when no span is storable):
    ``spans`` holds the per-span columns of ``otel_traces`` plus ``_res`` and ``_scope``, row
    indexes into ``resources`` and ``scopes``. ``count`` is the number of storable spans,
    ``rejected`` the number that cannot be stored; ``messages`` explains rejections and warnings
    (at most :data:`MAX_MESSAGES`, ``more_messages`` counts the rest).
    """

    spans: pa.Table | None
    resources: pa.Table | None
    scopes: pa.Table | None
    count: int
    rejected: int = 0
    messages: list[str] = field(default_factory=list)
    more_messages: int = 0

    def all_rejected(self, message: str) -> DecodedBatch:
        """This batch with every storable span rejected too (DuckDB refused them), explained."""
        messages = [*self.messages, f"{self.count} spans rejected: {message}"]
        return DecodedBatch(None, None, None, 0, self.rejected + self.count, messages, self.more_messages)

    def error_message(self) -> str:
        """One line for ``partial_success.error_message`` ('' when all is well)."""
        if not self.messages:
            return ""
        text = "; ".join(self.messages)
        if self.more_messages:
            text += f"; and {self.more_messages} more"
        return text


def events_and_links(span, events, links, problems, ev, ln) -> None:
    """Append one span's events and links (parsed messages) to the flat event / link columns."""
    ev_ts, ev_name, ev_dropped, ev_attrs = ev
    ln_tid, ln_sid, ln_state, ln_flags, ln_dropped, ln_attrs = ln
    for e in events:
        ev_ts.append(e.time_unix_nano)
        ev_name.append(e.name)
        ev_attrs.add(e.attributes, problems, ("event", e))
        ev_dropped.append(e.dropped_attributes_count)
    for link in links:
        ln_tid.append(link.trace_id.hex())
        ln_sid.append(link.span_id.hex())
        ln_state.append(link.trace_state)
        ln_flags.append(link.flags)
        ln_attrs.add(link.attributes, problems, ("link of span", span))
        ln_dropped.append(link.dropped_attributes_count)


def _as_dictionary(maps: pa.Array) -> pa.DictionaryArray:
    if isinstance(maps, pa.DictionaryArray):
        return maps
    return pa.DictionaryArray.from_arrays(pa.array(range(len(maps)), _I32), maps)


def _in_range(values: pa.Array, highest: int) -> pa.Array:
    """Enum values outside 0..highest (unknown to this OTLP version) become 0 (unspecified/unset)."""
    zero = _I32_CONST[0]
    in_range = pc.and_(pc.greater_equal(values, zero), pc.less_equal(values, _I32_CONST[highest]))
    return pc.if_else(in_range, values, zero)


def _u32_plus(counts, extra: list[int] | None) -> pa.Array:
    """``counts`` (a list or array) plus the per-item ``extra`` drops (``None``: no extra drops)."""
    if extra is not None and any(extra):
        counts = [a + b for a, b in zip(counts, extra, strict=True)]
    return _arr(counts, _U32)


def _arr(values, arrow_type) -> pa.Array:
    """``values`` as an Arrow array of ``arrow_type``: a list or numpy array is converted, an Arrow
    array (the C decoder's columns) is taken as it is."""
    return values if isinstance(values, pa.Array) else pa.array(values, arrow_type)


@dataclass
class SpanColumns:
    """Flat per-span columns gathered by a decoder (the OTLP field values, in span order).

    Each is a Python list, a numpy array or an Arrow array of the right type (the C decoder's
    columns); only spans that pass the checks may come as arrays (the rejection messages index
    ``ts``, ``tid`` ... as lists).
    """

    ts: list
    end: list
    tid: list
    sid: list
    pid: list
    tstate: list
    names: list
    kinds: list
    st_code: list
    st_msg: list
    flags: list
    d_attrs: list
    d_events: list
    d_links: list
    res_idx: list
    sc_idx: list
    ev_offsets: list
    ev: tuple
    ln_offsets: list
    ln: tuple


@dataclass
class ResourceScopeColumns:
    """Per-resource and per-scope column lists (``*_attrs`` are :class:`MapBuilder` s)."""

    res_service: list
    res_schema: list
    res_dropped: list
    res_attrs: MapBuilder
    sc_name: list
    sc_version: list
    sc_schema: list
    sc_dropped: list
    scope_attrs: MapBuilder


def new_event_link_columns() -> tuple[list, tuple, list, tuple]:
    """Empty ``(ev_offsets, ev, ln_offsets, ln)`` lists for :func:`events_and_links`."""
    return [0], ([], [], [], MapBuilder()), [0], ([], [], [], [], [], MapBuilder())


def _check(c: SpanColumns, count: int, start_u, end_u, ev_ts_u, problems: Problems):
    """(bad: a boolean mask of the spans that cannot be stored, how many); explains each one."""
    tid_a, sid_a, pid_a = _arr(c.tid, _STR), _arr(c.sid, _STR), _arr(c.pid, _STR)
    pid_len = pc.binary_length(pid_a)
    ev_bad = pc.greater(ev_ts_u, _MAX_NS_U64)
    ln_tid_a, ln_sid_a = _arr(c.ln[0], _STR), _arr(c.ln[1], _STR)
    ln_bad = pc.or_(
        pc.not_equal(pc.binary_length(ln_tid_a), _I32_CONST[32]),
        pc.not_equal(pc.binary_length(ln_sid_a), _I32_CONST[16]),
    )
    bad = pc.or_(
        pc.or_(pc.not_equal(pc.binary_length(tid_a), _I32_CONST[32]), pc.equal(tid_a, _ZERO_TRACE_HEX_S)),
        pc.or_(pc.not_equal(pc.binary_length(sid_a), _I32_CONST[16]), pc.equal(sid_a, _ZERO_SPAN_HEX_S)),
    )
    bad = pc.or_(bad, pc.or_(pc.greater(start_u, _MAX_NS_U64), pc.greater(end_u, _MAX_NS_U64)))
    bad = pc.or_(bad, pc.and_(pc.not_equal(pid_len, _I32_CONST[0]), pc.not_equal(pid_len, _I32_CONST[16])))
    ev_bad_spans = _owners(ev_bad, c.ev_offsets, count)
    ln_bad_spans = _owners(ln_bad, c.ln_offsets, count)
    for owners in (ev_bad_spans, ln_bad_spans):
        if owners:
            bad = pc.or_(bad, pa.array(np.isin(np.arange(count), list(owners))))
    n_bad = pc.sum(bad).as_py() or 0
    if n_bad:
        for i in pc.indices_nonzero(bad).to_pylist():
            problems.add(f"span {c.names[i]!r} rejected: {_why_rejected(c, i, ev_bad_spans, ln_bad_spans)}")
        problems.rejected += n_bad
    return bad, n_bad


_SCHEMA = otel_traces_arrow_schema()
_EVENTS_TYPE = _SCHEMA.field("Events").type
_LINKS_TYPE = _SCHEMA.field("Links").type
#: Children of an Events / Links column without a single event / link (the common case).
_NO_EVENTS = pa.array([], _EVENTS_TYPE.value_type)
_NO_LINKS = pa.array([], _LINKS_TYPE.value_type)


def _events(c: SpanColumns, ev_ts_u: pa.Array, problems: Problems) -> pa.ListArray:
    ev_ts, ev_name, ev_dropped, ev_attrs = c.ev
    offsets = _arr(c.ev_offsets, _I32)
    if not len(ev_ts_u):
        return pa.ListArray.from_arrays(offsets, _NO_EVENTS, type=_EVENTS_TYPE)
    child = pa.StructArray.from_arrays(
        [
            ev_ts_u.cast(pa.int64()).cast(_TS),
            _arr(ev_name, _STR),
            ev_attrs.array(problems, "event"),
            _u32_plus(ev_dropped, ev_attrs.dropped),
        ],
        fields=list(_EVENTS_TYPE.value_type),
    )
    return pa.ListArray.from_arrays(offsets, child, type=_EVENTS_TYPE)


def _links(c: SpanColumns, problems: Problems) -> pa.ListArray:
    ln_tid, ln_sid, ln_state, ln_flags, ln_dropped, ln_attrs = c.ln
    offsets = _arr(c.ln_offsets, _I32)
    if not ln_tid:
        return pa.ListArray.from_arrays(offsets, _NO_LINKS, type=_LINKS_TYPE)
    child = pa.StructArray.from_arrays(
        [
            _arr(ln_tid, _STR),
            _arr(ln_sid, _STR),
            _arr(ln_state, _STR),
            ln_attrs.array(problems, "link"),
            _u32_plus(ln_dropped, ln_attrs.dropped),
            _arr(ln_flags, _U32),
        ],
        fields=list(_LINKS_TYPE.value_type),
    )
    return pa.ListArray.from_arrays(offsets, child, type=_LINKS_TYPE)


def build_batch(
    problems: Problems,
    c: SpanColumns,
    span_attributes: pa.MapArray | pa.DictionaryArray,
    span_attrs_dropped: list[int] | None,
    rc: ResourceScopeColumns,
    prechecked: bool = False,
) -> DecodedBatch:
    """Checks (ids, times) and Arrow tables from gathered columns: the shared tail of the decoders.

    ``span_attributes`` is the finished ``SpanAttributes`` column, either one map per span or
    dictionary-encoded (int32 indexes into distinct maps: DuckDB then converts and checks each
    distinct map once, which measured 6.0 -> 3.9 µs/span of insert CPU on the benchmark spans); a
    plain map column is stored dictionary-encoded too, so every batch has the same schema.
    ``span_attrs_dropped`` the
    attributes each span lost to the limits (added to ``DroppedAttributesCount``; ``None``: none).
    ``prechecked``: the decoder already guarantees every span passes the checks (the C decoder
    returns nothing for a request with an unstorable span), so they are skipped.
    """
    count = len(c.ts)
    if not count:
        return DecodedBatch(None, None, None, 0, problems.rejected, problems.messages, problems.more)
    start_u, end_u = _arr(c.ts, pa.uint64()), _arr(c.end, pa.uint64())
    ev_ts_u = _arr(c.ev[0], pa.uint64())
    bad, n_bad = None, 0
    if not prechecked:
        bad, n_bad = _check(c, count, start_u, end_u, ev_ts_u, problems)
        if n_bad:
            start_u = pc.if_else(bad, _ZERO_U64, start_u)
            end_u = pc.if_else(bad, _ZERO_U64, end_u)
            ev_ts_u = pc.if_else(pc.greater(ev_ts_u, _MAX_NS_U64), _ZERO_U64, ev_ts_u)  # spans dropped below
    start_i = start_u.cast(pa.int64())
    spans_table = pa.table(
        {
            "Timestamp": start_i.cast(_TS),
            "TraceId": _arr(c.tid, _STR),
            "SpanId": _arr(c.sid, _STR),
            "ParentSpanId": _arr(c.pid, _STR),
            "TraceState": _arr(c.tstate, _STR),
            "SpanName": _arr(c.names, _STR),
            "SpanKind": _KIND_NAMES.take(_in_range(_arr(c.kinds, _I32), 5)),
            "SpanAttributes": _as_dictionary(span_attributes),
            "Duration": pc.subtract_checked(end_u.cast(pa.int64()), start_i),
            "StatusCode": _STATUS_NAMES.take(_in_range(_arr(c.st_code, _I32), 2)),
            "StatusMessage": _arr(c.st_msg, _STR),
            "Flags": _arr(c.flags, _U32),
            "DroppedAttributesCount": _u32_plus(c.d_attrs, span_attrs_dropped),
            "DroppedEventsCount": _arr(c.d_events, _U32),
            "DroppedLinksCount": _arr(c.d_links, _U32),
            "Events": _events(c, ev_ts_u, problems),
            "Links": _links(c, problems),
            "_res": _arr(c.res_idx, _I32),
            "_scope": _arr(c.sc_idx, _I32),
        }
    )
    if n_bad:
        spans_table = spans_table.filter(pc.invert(bad))
    resources = pa.table(
        {
            "_res": pa.array(range(len(rc.res_service)), _I32),
            "ServiceName": pa.array(rc.res_service, _STR),
            "ResourceAttributes": rc.res_attrs.array(problems, "resource"),
            "ResourceSchemaUrl": pa.array(rc.res_schema, _STR),
            "ResourceDroppedAttributesCount": _u32_plus(rc.res_dropped, rc.res_attrs.dropped),
        }
    )
    scopes = pa.table(
        {
            "_scope": pa.array(range(len(rc.sc_name)), _I32),
            "ScopeName": pa.array(rc.sc_name, _STR),
            "ScopeVersion": pa.array(rc.sc_version, _STR),
            "ScopeAttributes": rc.scope_attrs.array(problems, "scope"),
            "ScopeSchemaUrl": pa.array(rc.sc_schema, _STR),
            "ScopeDroppedAttributesCount": _u32_plus(rc.sc_dropped, rc.scope_attrs.dropped),
        }
    )
    stored = count - n_bad
    if not stored:
        return DecodedBatch(None, None, None, 0, problems.rejected, problems.messages, problems.more)
    return DecodedBatch(
        spans_table, resources, scopes, stored, problems.rejected, problems.messages, problems.more
    )


def _owners(item_bad: pa.Array, offsets: list[int], count: int) -> set[int]:
    """Indexes of the spans owning a flagged event / link (``offsets``: per-span list offsets)."""
    if not len(item_bad) or not pc.any(item_bad).as_py():
        return set()
    items = pc.indices_nonzero(item_bad).to_numpy()
    spans = np.searchsorted(np.asarray(offsets, np.int64), items, side="right") - 1
    return {int(i) for i in spans if 0 <= i < count}


def _why_rejected(c: SpanColumns, i: int, ev_bad_spans: set, ln_bad_spans: set) -> str:
    """The reason span ``i`` cannot be stored (the first rule it breaks, as in the checks)."""
    tid, sid, pid = c.tid[i], c.sid[i], c.pid[i]
    if len(tid) != 32 or tid == _ZERO_TRACE_HEX:
        return f"trace_id {tid!r} is not 16 non-zero bytes"
    if len(sid) != 16 or sid == _ZERO_SPAN_HEX:
        return f"span_id {sid!r} is not 8 non-zero bytes"
    if len(pid) not in (0, 16):
        return f"parent_span_id {pid!r} is not 8 bytes (or empty for a root span)"
    if c.ts[i] > _MAX_NS or c.end[i] > _MAX_NS:
        return "start/end time does not fit int64 nanoseconds (after year 2262)"
    if i in ev_bad_spans:
        return "an event time does not fit int64 nanoseconds (after year 2262)"
    for k in range(c.ln_offsets[i], c.ln_offsets[i + 1]):
        link_tid, link_sid = c.ln[0][k], c.ln[1][k]
        if len(link_tid) != 32:
            return f"link trace_id {link_tid!r} is not 16 bytes"
        if len(link_sid) != 16:
            return f"link span_id {link_sid!r} is not 8 bytes"
    return "invalid span"


def combine(batches: list[DecodedBatch]) -> pa.Table:
    """One table of ``otel_traces`` columns (in table order) holding every batch's spans.

    A span's resource and scope columns are dictionary-encoded: indexes (``_res`` / ``_scope``)
    into that batch's ``resources`` / ``scopes`` tables. Measured on the benchmark spans, this cuts
    the insert by about 3 µs/span for one 512-span request against joining the three tables in
    SQL (the same for 4 requests at once), and needs no renumbering across batches.
    """
    tables = []
    for b in batches:
        sp, res, sc = b.spans, b.resources, b.scopes
        res_idx, sc_idx = sp["_res"].combine_chunks(), sp["_scope"].combine_chunks()
        columns = []
        for name in OTEL_TRACES_COLUMNS:
            if name in RESOURCE_COLUMNS:
                columns.append(pa.DictionaryArray.from_arrays(res_idx, res[name].combine_chunks()))
            elif name in SCOPE_COLUMNS:
                columns.append(pa.DictionaryArray.from_arrays(sc_idx, sc[name].combine_chunks()))
            else:
                columns.append(sp[name])
        tables.append(pa.table(columns, names=list(OTEL_TRACES_COLUMNS)))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
