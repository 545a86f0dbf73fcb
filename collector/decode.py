"""The reference decoder: an OTLP ``ExportTraceServiceRequest`` message -> a columnar batch.

Decoding is columnar: each scope's spans are read field by field with list comprehensions into
flat Python lists, attribute maps into flat key / value / offset lists; :func:`.batch.build_batch`
turns them into Arrow arrays once per request and runs the checks (ids, times, value lengths)
vectorised with ``pyarrow.compute``. Resource- and scope-level columns are *not* repeated per
span: a batch holds three tables (spans, resources, scopes), and :func:`.batch.combine` turns them
into one insert table whose resource and scope columns are dictionary-encoded over the batch's few
resources and scopes, so DuckDB converts each resource's attribute map once, not once per span.
The fast decoders (:mod:`.fastdecode`, ``_otlpfast.c``) give the same batches; this one is used
for OTLP/JSON and for requests that hit a limit below.

Values are rendered like pdata's ``Value.AsString()`` (:mod:`tracehound.collector.anyvalue`).

Limits (see :mod:`tracehound.collector.attributes`; also in the README, section "Collector"):

* :data:`MAX_ATTRIBUTES` per attribute map (span, resource, scope, event, link): the first
  ``MAX_ATTRIBUTES`` are kept and the rest added to that map's ``DroppedAttributesCount`` (the rule
  the OTel SDK applies with its attribute count limit).
* :data:`MAX_VALUE_CHARS` per attribute value (after rendering to text): longer values are cut to
  that length, as the SDK's attribute value length limit does.
* A repeated key in one map (the OTLP spec forbids it): the first value is kept, the repeats are
  counted as dropped.

These are reported to the client as warnings in ``partial_success.error_message`` with
``rejected_spans`` 0 (the OTLP spec allows warnings). Spans whose ``trace_id`` is not 16 bytes or
whose ``span_id`` is not 8 bytes (or either is all zero), whose ``parent_span_id`` is neither empty
nor 8 bytes, with a link whose ids are not 16 / 8 bytes, or whose start, end or event times do not
fit int64 nanoseconds (after year 2262), cannot be stored: they are counted in ``rejected_spans``
with a message, and the other spans of the request are stored. The whole span is rejected (not
the bad id blanked or the event dropped), so nothing is stored half right.
"""

from __future__ import annotations

from .anyvalue import render_value
from .attributes import MAX_ATTRIBUTES, MapBuilder, Problems
from .batch import (
    DecodedBatch,
    ResourceScopeColumns,
    SpanColumns,
    build_batch,
    events_and_links,
    new_event_link_columns,
)


def decode_request(request) -> DecodedBatch:
    """Flatten an ``ExportTraceServiceRequest`` message into a :class:`DecodedBatch`.

    Never raises for content problems: unstorable spans are counted and explained instead.
    """
    problems = Problems()
    res_attrs, scope_attrs, span_attrs = MapBuilder(), MapBuilder(), MapBuilder()
    res_service, res_schema, res_dropped = [], [], []
    sc_name, sc_version, sc_schema, sc_dropped = [], [], [], []
    res_idx, sc_idx = [], []
    ts, end, tid, sid, pid, tstate, names, kinds = [], [], [], [], [], [], [], []
    st_code, st_msg, flags, d_attrs, d_events, d_links = [], [], [], [], [], []
    ev_offsets, ev, ln_offsets, ln = new_event_link_columns()
    ts_append, end_append, tid_append, sid_append = ts.append, end.append, tid.append, sid.append
    pid_append, tstate_append, names_append, kinds_append = (
        pid.append,
        tstate.append,
        names.append,
        kinds.append,
    )
    code_append, msg_append, flags_append = st_code.append, st_msg.append, flags.append
    d_attrs_append, d_events_append, d_links_append = d_attrs.append, d_events.append, d_links.append
    a_keys, a_values = span_attrs.keys, span_attrs.values
    a_offsets_append, a_dropped_append = span_attrs.offsets.append, span_attrs.dropped.append
    ev_offsets_append, ln_offsets_append = ev_offsets.append, ln_offsets.append

    for rs in request.resource_spans:
        resource = rs.resource
        r_i = len(res_service)
        service = "unknown_service"
        for kv in resource.attributes:
            if kv.key == "service.name":
                service = render_value(kv.value)
                break
        res_attrs.add(resource.attributes, problems, ("resource of", service))
        res_service.append(service)
        res_schema.append(rs.schema_url)
        res_dropped.append(resource.dropped_attributes_count)
        for ss in rs.scope_spans:
            scope = ss.scope
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
            for s in spans:
                ts_append(s.start_time_unix_nano)
                end_append(s.end_time_unix_nano)
                tid_append(s.trace_id.hex())
                sid_append(s.span_id.hex())
                pid_append(s.parent_span_id.hex())
                tstate_append(s.trace_state)
                names_append(s.name)
                kinds_append(s.kind)
                status = s.status
                code_append(status.code)
                msg_append(status.message)
                flags_append(s.flags)
                d_attrs_append(s.dropped_attributes_count)
                d_events_append(s.dropped_events_count)
                d_links_append(s.dropped_links_count)
                kvs = s.attributes
                keys = [kv.key for kv in kvs]
                if len(keys) > MAX_ATTRIBUTES or len(set(keys)) != len(keys):
                    span_attrs.add(kvs, problems, ("span", s))
                else:
                    a_keys += keys
                    a_values += [kv.value.string_value or render_value(kv.value) for kv in kvs]
                    a_offsets_append(len(a_keys))
                    a_dropped_append(0)
                events, links = s.events, s.links
                if events or links:
                    events_and_links(s, events, links, problems, ev, ln)
                ev_offsets_append(len(ev[0]))
                ln_offsets_append(len(ln[0]))

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
        span_attrs.array(problems, "span"),
        span_attrs.dropped,
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
