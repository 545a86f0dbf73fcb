"""Bad input to a real ``tracehound serve``: each gets a clear 4xx or a partial success with a
message, the server goes on serving, and data stored before is intact.

One server serves the whole module. DuckDB lets only one process open the file, so what a test
expects to find stored (``server.expect``) is checked when the module's server fixture stops the
server: any subset of the tests, in any order, checks exactly what it stored.
"""

from __future__ import annotations

import gzip
import json
import os

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.collector_rows import stored_spans
from tests.support.server import running_server

MIB = 1024 * 1024
LIMIT = 12 * MIB
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def _request(*span_ids: str, trace_id: bytes = bytes(range(1, 17)), name: str = "op", attributes=()):
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="bad-input"))
    ss = rs.scope_spans.add()
    for span_id in span_ids:
        span = ss.spans.add(
            trace_id=trace_id,
            span_id=bytes.fromhex(span_id),
            name=name,
            start_time_unix_nano=1_700_000_000_000_000_000,
            end_time_unix_nano=1_700_000_000_000_001_000,
        )
        span.attributes.extend(attributes)
    return request


def _status(response: httpx.Response) -> status_pb2.Status:
    if response.headers["content-type"] == "application/json":
        return json_format.Parse(response.content, status_pb2.Status())
    return status_pb2.Status.FromString(response.content)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running server; after the module's tests, stops it and checks every stored span."""
    with running_server(tmp_path_factory.mktemp("bad"), "--max-body-bytes", str(LIMIT)) as srv:
        srv.url = srv.otlp_http_endpoint + "/v1/traces"
        srv.good_ids = ["00000000000000a1", "00000000000000a2"]
        srv.expect = {}  # span id -> check(row), or None: must not be stored; run after stop
        r = httpx.post(srv.url, content=_request(*srv.good_ids).SerializeToString(), headers=PROTOBUF)
        assert r.status_code == 200
        yield srv
        srv.stop()
    rows = stored_spans(srv.db_path)
    missing = [i for i in srv.good_ids if i not in rows]
    assert not missing, f"good spans lost: {missing}"
    for span_id, check in srv.expect.items():
        if check is None:
            assert span_id not in rows, span_id
        else:
            assert span_id in rows and check(rows[span_id]), f"stored span {span_id} not as expected"
    assert len(rows) == len(srv.good_ids) + sum(c is not None for c in srv.expect.values())


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    if server.process.poll() is not None:
        return
    assert httpx.get(server.otlp_http_endpoint + "/healthz").status_code == 200
    span_id = os.urandom(8).hex()
    assert (
        httpx.post(server.url, content=_request(span_id).SerializeToString(), headers=PROTOBUF).status_code
        == 200
    )
    server.good_ids.append(span_id)


def test_truncated_protobuf_gets_400_with_status(server):
    body = _request("00000000000000b1").SerializeToString()
    r = httpx.post(server.url, content=body[: len(body) // 2], headers=PROTOBUF)
    assert r.status_code == 400
    assert "not a protobuf ExportTraceServiceRequest" in _status(r).message


def test_random_bytes_get_400(server):
    bad_before = server.status()["requests_bad"]
    r = httpx.post(server.url, content=bytes([0xFF, 0xFF, 0xFF, 0x0F]) + os.urandom(64), headers=PROTOBUF)
    assert r.status_code == 400
    assert _status(r).code == 3  # INVALID_ARGUMENT
    assert server.status()["requests_bad"] == bad_before + 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", ""])
def test_wrong_content_type_gets_415(server, content_type):
    r = httpx.post(server.url, content=b"{}", headers={"Content-Type": content_type})
    assert r.status_code == 415
    assert "unsupported Content-Type" in _status(r).message


def test_unknown_content_encoding_gets_415(server):
    r = httpx.post(server.url, content=b"xx", headers={**PROTOBUF, "Content-Encoding": "br"})
    assert r.status_code == 415 and "Content-Encoding" in _status(r).message


def test_gzip_header_on_plain_body_gets_400(server):
    r = httpx.post(server.url, content=b"not gzip", headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in _status(r).message


def test_json_with_base64_ids_gets_400_naming_hex(server):
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "AQIDBAUGBwgJCgsMDQ4PEA==",
                                "spanId": "AQIDBAUGBwg=",
                                "name": "b64",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000000000001",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    r = httpx.post(server.url, content=json.dumps(doc), headers=JSON)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    message = _status(r).message
    assert "traceId" in message and "hex" in message and "base64" in message


def test_json_that_is_not_json_gets_400(server):
    r = httpx.post(server.url, content=b'{"resourceSpans": [', headers=JSON)
    assert r.status_code == 400 and "not valid JSON" in _status(r).message


def test_oversized_body_gets_413(server):
    body = _request(
        "00000000000000c1", attributes=[KeyValue(key="big", value=AnyValue(string_value="x" * LIMIT))]
    )
    r = httpx.post(server.url, content=body.SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 413 and "--max-body-bytes" in _status(r).message
    assert _status(r).code == 8  # RESOURCE_EXHAUSTED


def test_gzip_bomb_gets_413_without_inflating(server):
    bomb = gzip.compress(b"\0" * (200 * MIB), compresslevel=9)
    assert len(bomb) < MIB
    r = httpx.post(server.url, content=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 413
    assert "decompressed" in _status(r).message and _status(r).code == 8


def test_invalid_utf8_in_protobuf_string_gets_400(server):
    body = _request("00000000000000d1", name="MARKER").SerializeToString()
    assert body.count(b"MARKER") == 1
    r = httpx.post(server.url, content=body.replace(b"MARKER", b"\xff\xfe\xfd\xc3\x28\x80"), headers=PROTOBUF)
    assert r.status_code == 400
    assert "UTF-8" in _status(r).message


def test_invalid_utf8_in_json_gets_400(server):
    r = httpx.post(server.url, content=b'{"resourceSpans": [], "x": "\xff\xfe"}', headers=JSON)
    assert r.status_code == 400


def test_empty_trace_id_is_rejected_in_partial_success_and_rest_stored(server):
    request = _request("00000000000000e1", "00000000000000e2")
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b""
    request.resource_spans[0].scope_spans[0].spans.add(
        trace_id=bytes(16), span_id=bytes.fromhex("00000000000000e3")
    )
    r = httpx.post(server.url, content=request.SerializeToString(), headers=PROTOBUF)
    assert r.status_code == 200
    response = ExportTraceServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_spans == 2
    assert "trace_id" in response.partial_success.error_message
    server.expect["00000000000000e2"] = lambda row: row["SpanName"] == "op"
    server.expect["00000000000000e1"] = None  # must not be stored


def test_json_empty_span_id_is_partial_success(server):
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "", "name": "no id"},
                            {
                                "traceId": "0102030405060708090a0b0c0d0e0f10",
                                "spanId": "00000000000000f1",
                                "name": "fine",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": 1700000000000000005,
                            },
                        ]
                    }
                ]
            }
        ]
    }
    r = httpx.post(server.url, content=json.dumps(doc), headers=JSON)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["partialSuccess"]["rejectedSpans"] == "1"
    assert "span_id" in body["partialSuccess"]["errorMessage"]
    server.expect["00000000000000f1"] = lambda row: (
        (row["SpanName"], row["SpanKind"], row["Duration"]) == ("fine", "Server", 5)
    )


def test_ten_thousand_attributes_are_capped_with_dropped_count(server):
    attributes = [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(10_000)]
    r = httpx.post(
        server.url,
        content=_request("0000000000000a01", attributes=attributes).SerializeToString(),
        headers=PROTOBUF,
    )
    assert r.status_code == 200
    response = ExportTraceServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_spans == 0
    assert "kept 1024 of 10000 attributes" in response.partial_success.error_message
    server.expect["0000000000000a01"] = lambda row: (
        len(row["SpanAttributes"]) == 1024
        and row["SpanAttributes"]["k1023"] == "1023"
        and row["DroppedAttributesCount"] == 10_000 - 1024
    )


def test_ten_megabyte_value_is_cut_with_warning(server):
    big = "é" * (5 * MIB)  # 10 MB of UTF-8
    attributes = [
        KeyValue(key="huge", value=AnyValue(string_value=big)),
        KeyValue(key="small", value=AnyValue(string_value="s")),
    ]
    r = httpx.post(
        server.url,
        content=_request("0000000000000a02", attributes=attributes).SerializeToString(),
        headers=PROTOBUF,
        timeout=30,
    )
    assert r.status_code == 200
    message = ExportTraceServiceResponse.FromString(r.content).partial_success.error_message
    assert "'huge'" in message and "cut to 65536" in message
    server.expect["0000000000000a02"] = lambda row: (
        row["SpanAttributes"] == {"huge": "é" * 65536, "small": "s"}
    )


def test_repeated_attribute_keys_keep_the_first(server):
    attributes = [
        KeyValue(key="k", value=AnyValue(string_value="first")),
        KeyValue(key="k", value=AnyValue(string_value="second")),
    ]
    r = httpx.post(
        server.url,
        content=_request("0000000000000a03", attributes=attributes).SerializeToString(),
        headers=PROTOBUF,
    )
    assert r.status_code == 200
    assert (
        "repeated attribute keys"
        in ExportTraceServiceResponse.FromString(r.content).partial_success.error_message
    )
    server.expect["0000000000000a03"] = lambda row: (
        (row["SpanAttributes"], row["DroppedAttributesCount"]) == ({"k": "first"}, 1)
    )


def test_grpc_garbage_and_oversized_messages_are_refused(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.otlp_grpc_port}") as channel:
        raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as garbage:
            raw(b"\xff\xff\xff\xff\x0f garbage", timeout=10)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a protobuf ExportTraceServiceRequest" in garbage.value.details()
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        big = _request(
            "0000000000000a04", attributes=[KeyValue(key="b", value=AnyValue(string_value="x" * LIMIT))]
        )
        with pytest.raises(grpc.RpcError) as too_big:
            stub.Export(big, timeout=10)
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_gzip_bomb_is_refused_on_its_inflated_size(server):
    bomb = _request(
        "0000000000000a05", attributes=[KeyValue(key="b", value=AnyValue(string_value="x" * (LIMIT + MIB)))]
    )
    with (
        grpc.insecure_channel(
            f"127.0.0.1:{server.otlp_grpc_port}", compression=grpc.Compression.Gzip
        ) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(bomb, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_get_on_traces_endpoint_is_405(server):
    assert httpx.get(server.url).status_code == 405


def _far_future_request(prefix: str) -> ExportTraceServiceRequest:
    """Three spans ``{prefix}01..03``: fine, start at 2**64-1 ns, an event at 2**64-1 ns."""
    request = _request(f"{prefix}01", f"{prefix}02", f"{prefix}03")
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].events.add(time_unix_nano=1_700_000_000_000_000_500, name="in time")
    spans[1].start_time_unix_nano = 2**64 - 1
    spans[2].events.add(time_unix_nano=2**64 - 1, name="far future")
    return request


def _expect_far_future_outcome(server, prefix: str, response) -> None:
    assert response.partial_success.rejected_spans == 2
    assert "after year 2262" in response.partial_success.error_message
    assert "an event time" in response.partial_success.error_message
    server.expect[f"{prefix}01"] = lambda row: [e["name"] for e in row["events"]] == ["in time"]
    server.expect[f"{prefix}02"] = None
    server.expect[f"{prefix}03"] = None


def test_times_past_2262_are_rejected_in_partial_success_over_http(server):
    r = httpx.post(
        server.url, content=_far_future_request("0000000000000b").SerializeToString(), headers=PROTOBUF
    )
    assert r.status_code == 200, r.content
    _expect_far_future_outcome(server, "0000000000000b", ExportTraceServiceResponse.FromString(r.content))


def test_times_past_2262_are_rejected_in_partial_success_over_grpc(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.otlp_grpc_port}") as channel:
        response = trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            _far_future_request("0000000000000c"), timeout=10
        )
    _expect_far_future_outcome(server, "0000000000000c", response)


def test_parent_id_of_three_bytes_is_rejected_over_json_and_protobuf(server):
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0102030405060708090a0b0c0d0e0f10",
                                "spanId": "0000000000000d01",
                                "parentSpanId": "abcdef",
                                "name": "short parent",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    r = httpx.post(server.url, content=json.dumps(doc), headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "parent_span_id 'abcdef'" in r.json()["partialSuccess"]["errorMessage"]
    request = _request("0000000000000d02", "0000000000000d03")
    request.resource_spans[0].scope_spans[0].spans[0].parent_span_id = bytes.fromhex("abcdef")
    r = httpx.post(server.url, content=request.SerializeToString(), headers=PROTOBUF)
    response = ExportTraceServiceResponse.FromString(r.content)
    assert r.status_code == 200 and response.partial_success.rejected_spans == 1
    server.expect["0000000000000d01"] = None
    server.expect["0000000000000d02"] = None
    server.expect["0000000000000d03"] = lambda row: row["ParentSpanId"] == ""


@pytest.mark.parametrize("opener", [b"[", b'{"resourceSpans": '])
def test_deeply_nested_json_gets_400_nesting_too_deep(server, opener):
    r = httpx.post(server.url, content=opener * 5000, headers=JSON)
    assert r.status_code == 400, r.text
    assert "nesting too deep" in _status(r).message


def test_gzip_of_several_members_is_read_whole(server):
    body = _request("0000000000000e11", "0000000000000e12").SerializeToString()
    half = len(body) // 2
    two_members = gzip.compress(body[:half]) + gzip.compress(body[half:])
    r = httpx.post(server.url, content=two_members, headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.content
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    server.expect["0000000000000e11"] = lambda row: row["SpanName"] == "op"
    server.expect["0000000000000e12"] = lambda row: row["SpanName"] == "op"


def test_gzip_with_trailing_garbage_gets_400(server):
    body = gzip.compress(_request("0000000000000e21").SerializeToString()) + b"garbage"
    r = httpx.post(server.url, content=body, headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert "trailing data" in _status(r).message
    server.expect["0000000000000e21"] = None


def test_gzip_members_together_over_the_limit_get_413(server):
    member = gzip.compress(b"\0" * (LIMIT // 2 + 1))
    r = httpx.post(server.url, content=member * 2, headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert r.status_code == 413 and _status(r).code == 8
