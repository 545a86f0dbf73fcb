"""The fast protobuf decoder (lazy mirror messages + attribute cache) gives exactly what the
reference decoder (``decode_request`` over the real OTLP classes) gives, for ordinary and for
edge-case requests, and refuses the same undecodable bodies."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from tracehound.collector import fastdecode
from tracehound.collector.decode import decode_request
from tracehound.collector.fastdecode import decode_protobuf

from bench.spans import make_request
from tests.test_collector_fidelity import build_request


def _same(request: ExportTraceServiceRequest):
    body = request.SerializeToString()
    fast = decode_protobuf(body)
    reference = decode_request(ExportTraceServiceRequest.FromString(body))
    assert (fast.count, fast.rejected) == (reference.count, reference.rejected)
    assert fast.error_message() == reference.error_message()
    for name in ("spans", "resources", "scopes"):
        got, want = getattr(fast, name), getattr(reference, name)
        if want is None:
            assert got is None
        else:
            got, want = _plain(got), _plain(want)
            assert got.equals(want), (name, got.to_pylist()[:2], want.to_pylist()[:2])
    return fast


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with dictionary-encoded columns decoded (dictionaries differ between decoders)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            column = table.column(i).combine_chunks()
            table = table.set_column(i, field.name, column.dictionary.take(column.indices))
    return table


def test_identical_attribute_lists_share_one_dictionary_entry():
    batch = decode_protobuf(make_request(512, seed=5).SerializeToString())
    column = batch.spans.column("SpanAttributes").combine_chunks()
    assert len(column) == 512 and len(column.dictionary) < 512
    assert len(set(map(tuple, column.dictionary.to_pylist()))) == len(column.dictionary)


def _rows(batch) -> list[dict]:
    """Span rows without the timestamp columns (pyarrow cannot turn ns times into datetimes)."""
    spans = batch.spans
    rows = spans.select(["SpanName", "SpanKind", "StatusCode", "StatusMessage"]).to_pylist()
    names = spans.column("Events").combine_chunks()
    for row, evs, links in zip(
        rows,
        pa.ListArray.from_arrays(names.offsets, names.flatten().field("Name")).to_pylist(),
        pc.list_value_length(spans.column("Links")).to_pylist(),
        strict=True,
    ):
        row["events"], row["links"] = evs, links
    return rows


def test_mirror_messages_match_the_otlp_field_numbers_and_wire_types():
    real = {
        "Request": ExportTraceServiceRequest.DESCRIPTOR,
        "ResourceSpans": trace_pb2.ResourceSpans.DESCRIPTOR,
        "ScopeSpans": trace_pb2.ScopeSpans.DESCRIPTOR,
        "Span": Span.DESCRIPTOR,
    }
    length_delimited = {9, 11, 12}  # string, message, bytes
    for mirror in (fastdecode.MIRROR, fastdecode.EVENTS_MIRROR):
        for name, fields in mirror.items():
            by_number = {f.number: f for f in real[name].fields}
            for _, number, ftype, repeated, _ in fields:
                f = by_number[number]
                assert (ftype in length_delimited) == (f.type in length_delimited), (name, number)
                if ftype not in length_delimited:
                    assert ftype == f.type or {ftype, f.type} == {5, 14}, (name, number)  # int32 ~ enum
                # a repeated field read as one bytes value only serves to detect presence
                assert repeated == f.is_repeated or fields is fastdecode.MIRROR["Span"]
    assert set(fastdecode.MIRROR["Span"][i][1] for i in range(16)) == {
        f.number for f in Span.DESCRIPTOR.fields
    }


def test_benchmark_requests_decode_identically():
    for seed in range(3):
        batch = _same(make_request(512, seed=seed, start_ns=1_700_000_000_000_000_000 + seed))
        assert batch.count == 512


def test_every_field_and_anyvalue_type_events_links_and_several_resources():
    batch = _same(build_request())
    row = _rows(batch)[0]
    assert row["events"] == ["ev1", "ev2"] and row["links"] == 1
    assert row["StatusCode"] == "Error" and row["StatusMessage"] == "it broke"


def test_events_in_a_later_scope_and_unknown_enum_values():
    request = build_request()
    extra = (
        request.resource_spans[1]
        .scope_spans[1]
        .spans.add(trace_id=bytes(range(3, 19)), span_id=bytes(range(3, 11)), name="late", kind=9)
    )
    extra.events.add(name="e", time_unix_nano=5)
    extra.status.code = 7
    extra.status.message = "odd"
    batch = _same(request)
    late = [r for r in _rows(batch) if r["SpanName"] == "late"][0]
    assert late["SpanKind"] == "Unspecified" and late["StatusCode"] == "Unset"
    assert late["events"] == ["e"]


def _one_span(attributes, name="op") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(
            trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name=name, start_time_unix_nano=1
        )
    )
    span.attributes.extend(attributes)
    span.status.CopyFrom(Status(code=Status.STATUS_CODE_OK))
    return request


def test_limits_fall_back_to_the_reference_decoder_with_its_messages():
    many = [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(1500)]
    assert "limit 1024" in _same(_one_span(many)).error_message()
    repeated = [KeyValue(key="a", value=AnyValue(int_value=i)) for i in range(3)]
    assert "repeated" in _same(_one_span(repeated)).error_message()
    long = [KeyValue(key="big", value=AnyValue(string_value="x" * 70_000))]
    assert "cut to" in _same(_one_span(long)).error_message()


def test_bad_ids_are_rejected_like_the_reference():
    request = _one_span([KeyValue(key="a", value=AnyValue(string_value="b"))])
    bad = request.resource_spans[0].scope_spans[0].spans.add(trace_id=b"", span_id=bytes(range(1, 9)))
    bad.attributes.add(key="a", value=AnyValue(string_value="b"))
    batch = _same(request)
    assert batch.rejected == 1 and batch.count == 1


def test_invalid_utf8_inside_a_cached_attribute_or_event_is_a_decode_error():
    marker = "MARKER"
    for build in (
        lambda: _one_span([KeyValue(key="k", value=AnyValue(string_value=marker))]),
        lambda: _one_span([KeyValue(key=marker, value=AnyValue(int_value=1))]),
        lambda: _with_event(marker),
        lambda: _with_resource_attr(marker),
    ):
        body = build().SerializeToString().replace(b"MARKER", b"\xff\xfe\xfd\xc3\x28\x80")
        with pytest.raises(DecodeError):
            ExportTraceServiceRequest.FromString(body)
        with pytest.raises(DecodeError):
            decode_protobuf(body)


def _with_event(name):
    request = _one_span([])
    request.resource_spans[0].scope_spans[0].spans[0].events.add(name=name)
    return request


def _with_resource_attr(value):
    request = _one_span([])
    request.resource_spans[0].resource.attributes.add(key="service.name", value=AnyValue(string_value=value))
    return request


def test_truncated_body_is_a_decode_error():
    body = make_request(20, seed=1).SerializeToString()
    with pytest.raises(DecodeError):
        decode_protobuf(body[:-7])
