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
from tracehound.collector import cdecode, fastdecode
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
                # a repeated field read as one bytes value only serves to detect presence; singular
                # messages are read as repeated bytes (every occurrence, merged by joining them)
                singular_message = f.type == 11 and not f.is_repeated
                assert repeated == (f.is_repeated or singular_message) or fields is fastdecode.MIRROR["Span"]
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


# -- the C column decoder (collector/_otlpfast.c): used for the common shape, None otherwise ------


def test_the_c_decoder_is_built_and_takes_the_common_shape():
    assert cdecode._otlpfast is not None, "collector/_otlpfast.c did not build (is a C compiler installed?)"
    body = make_request(512, seed=9).SerializeToString()
    columns = cdecode._otlpfast.decode(body)
    assert columns is not None and columns[0] == 512
    assert len(columns[1]) == 512 * cdecode._FIXED_DTYPE.itemsize


def _c_takes(request: ExportTraceServiceRequest) -> bool:
    return cdecode._otlpfast.decode(request.SerializeToString()) is not None


@pytest.mark.parametrize(
    "change",
    [
        "event",
        "link",
        "zero trace id",
        "short span id",
        "long parent id",
        "start after 2262",
    ],
)
def test_shapes_the_c_decoder_hands_back_decode_like_the_reference(change):
    request = _one_span([KeyValue(key="a", value=AnyValue(string_value="b"))])
    span = request.resource_spans[0].scope_spans[0].spans[0]
    if change == "event":
        span.events.add(name="e", time_unix_nano=3)
    elif change == "link":
        span.links.add(trace_id=bytes(range(2, 18)), span_id=bytes(range(2, 10)))
    elif change == "zero trace id":
        span.trace_id = bytes(16)
    elif change == "short span id":
        span.span_id = b"\x01\x02"
    elif change == "long parent id":
        span.parent_span_id = bytes(range(1, 17))
    elif change == "start after 2262":
        span.start_time_unix_nano = 1 << 63
    assert not _c_takes(request)
    _same(request)


def test_unknown_fields_are_skipped_and_a_repeated_status_is_merged_like_protobuf():
    request = _one_span([KeyValue(key="a", value=AnyValue(string_value="b"))])
    body = request.SerializeToString()
    # unknown fields in the span: varint 40, fixed64 41, bytes 42, fixed32 43 (tags by hand)
    unknown = b"\xc0\x02\x05" + b"\xc9\x02" + bytes(8) + b"\xd2\x02\x03abc" + b"\xdd\x02" + bytes(4)
    spans = ExportTraceServiceRequest.FromString(body)
    span = spans.resource_spans[0].scope_spans[0].spans[0]
    span_bytes = span.SerializeToString()
    extended = Span.FromString(span_bytes + unknown)
    assert cdecode._otlpfast.decode(_wrap(span_bytes + unknown)) is not None
    reference = decode_request(ExportTraceServiceRequest.FromString(_wrap(span_bytes + unknown)))
    fast = decode_protobuf(_wrap(span_bytes + unknown))
    assert _plain(fast.spans).equals(_plain(reference.spans)) and extended.name == "op"
    # status given twice: protobuf merges the two messages (code from one, message from the other)
    twice = span_bytes + Span(status=Status(message="first")).SerializeToString()
    twice += Span(status=Status(code=Status.STATUS_CODE_ERROR)).SerializeToString()
    assert cdecode._otlpfast.decode(_wrap(twice)) is None
    batch = decode_protobuf(_wrap(twice))
    row = _rows(batch)[0]
    assert (row["StatusCode"], row["StatusMessage"]) == ("Error", "first")


def _wrap(span_bytes: bytes) -> bytes:
    """A request body holding one resource, one scope and the given encoded span."""
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(Span.FromString(span_bytes))
    body = request.SerializeToString()
    # rebuild by hand so the span's own bytes (unknown fields included) go on the wire unchanged
    scope_spans = b"\x12" + _varint(len(span_bytes)) + span_bytes
    resource_spans = b"\x12" + _varint(len(scope_spans)) + scope_spans
    assert body  # the protobuf classes accept the shape
    return b"\x0a" + _varint(len(resource_spans)) + resource_spans


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("text", ["caf\xe9 \u2603 \U0001f600", ""])
def test_valid_utf8_names_pass_and_invalid_ones_are_decode_errors(text):
    request = _one_span([], name=text)
    assert _c_takes(request)
    _same(request)
    marker = "NAME-MARKER"
    for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"):
        body = (
            _one_span([], name=marker)
            .SerializeToString()
            .replace(marker.encode(), bad + b"xxxxxxxxx"[: 11 - len(bad)])
        )
        with pytest.raises(DecodeError):
            ExportTraceServiceRequest.FromString(body)
        with pytest.raises(DecodeError):
            decode_protobuf(body)


def test_mutated_bodies_decode_exactly_like_the_reference_or_fail_like_it():
    """Byte flips and truncations of a realistic body: the three tiers agree with protobuf."""
    import random

    rng = random.Random(7)
    body = make_request(40, seed=3).SerializeToString()
    outcomes = {"same": 0, "both refused": 0}
    for _ in range(600):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if rng.random() < 0.2:
            mutated = mutated[: rng.randrange(len(mutated))]
        mutated = bytes(mutated)
        try:
            reference = decode_request(ExportTraceServiceRequest.FromString(mutated))
        except DecodeError:
            with pytest.raises(DecodeError):
                decode_protobuf(mutated)
            outcomes["both refused"] += 1
            continue
        fast = decode_protobuf(mutated)
        assert (fast.count, fast.rejected, fast.error_message()) == (
            reference.count,
            reference.rejected,
            reference.error_message(),
        )
        if reference.spans is not None:
            assert _plain(fast.spans).equals(_plain(reference.spans))
            assert _plain(fast.resources).equals(_plain(reference.resources))
            assert _plain(fast.scopes).equals(_plain(reference.scopes))
        outcomes["same"] += 1
    assert outcomes["same"] > 50 and outcomes["both refused"] > 50, outcomes
