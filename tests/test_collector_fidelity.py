"""Every OTLP field round-trips: a hand-built request (all AnyValue types, schema URLs, dropped
counts, link trace state...) sent as OTLP/HTTP protobuf, OTLP/HTTP JSON (hex ids) and OTLP/gRPC
with gzip to a real ``tracehound serve``."""

from __future__ import annotations

import base64
import gzip
import json

import grpc
import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.collector_rows import stored_spans
from tests.support.server import running_server

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
ROOT = bytes.fromhex("eee19b7ec3c1b174")
CHILD = bytes.fromhex("eee19b7ec3c1b173")
T0 = 1_700_000_000_000_000_001

# (AnyValue, expected text in the MAP column: pdata Value.AsString())
VALUES = {
    "s": (AnyValue(string_value="a\x00b ünï"), "a\x00b ünï"),
    "i": (AnyValue(int_value=-(2**63)), str(-(2**63))),
    "d": (AnyValue(double_value=0.1), "0.1"),
    "d_nan": (AnyValue(double_value=float("nan")), "NaN"),
    "d_inf": (AnyValue(double_value=float("-inf")), "-Inf"),
    "b": (AnyValue(bool_value=True), "true"),
    "bytes": (AnyValue(bytes_value=b"\x00\xffhi"), base64.b64encode(b"\x00\xffhi").decode()),
    "empty": (AnyValue(), ""),
    "arr": (
        AnyValue(
            array_value=ArrayValue(
                values=[
                    AnyValue(string_value="x"),
                    AnyValue(int_value=7),
                    AnyValue(double_value=2.5),
                    AnyValue(bool_value=False),
                    AnyValue(bytes_value=b"\x01"),
                    AnyValue(),
                    AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
                ]
            )
        ),
        '["x",7,2.5,false,"AQ==",null,[1]]',
    ),
    "kv": (
        AnyValue(
            kvlist_value=KeyValueList(
                values=[
                    KeyValue(key="k", value=AnyValue(string_value="v")),
                    KeyValue(key="n", value=AnyValue(kvlist_value=KeyValueList(values=[]))),
                    KeyValue(key="d", value=AnyValue(double_value=1e22)),
                ]
            )
        ),
        '{"k":"v","n":{},"d":1e+22}',
    ),
}


def _attrs(prefix=""):
    return [KeyValue(key=prefix + k, value=v) for k, (v, _) in VALUES.items()]


def _expected(prefix=""):
    return {prefix + k: text for k, (_, text) in VALUES.items()}


def build_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    rs.resource.attributes.extend(
        [KeyValue(key="service.name", value=AnyValue(string_value="svc")), *_attrs("r.")]
    )
    rs.resource.dropped_attributes_count = 4
    ss = rs.scope_spans.add(schema_url="https://scope/schema")
    ss.scope.name = "my.scope"
    ss.scope.version = "1.0.0"
    ss.scope.attributes.extend(_attrs("sc."))
    ss.scope.dropped_attributes_count = 2
    root = ss.spans.add(
        trace_id=TRACE,
        span_id=ROOT,
        trace_state="rojo=00f067aa0ba902b7",
        name="root",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 123_456_789,
        flags=0x301,
        dropped_attributes_count=5,
        dropped_events_count=6,
        dropped_links_count=7,
    )
    root.attributes.extend(_attrs())
    root.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="it broke"))
    root.events.add(time_unix_nano=T0 + 5, name="ev1", attributes=_attrs("e."), dropped_attributes_count=1)
    root.events.add(time_unix_nano=T0 + 6, name="ev2")
    root.links.add(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        trace_state="k=v",
        attributes=_attrs("l."),
        dropped_attributes_count=3,
        flags=0x101,
    )
    child = ss.spans.add(
        trace_id=TRACE,
        span_id=CHILD,
        parent_span_id=ROOT,
        name="child",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + 10,
        end_time_unix_nano=T0 + 20,
    )
    child.status.code = Status.STATUS_CODE_OK
    # a second resource without service.name, and an empty scope
    other = request.resource_spans.add()
    other.scope_spans.add()
    other.scope_spans.add().spans.add(
        trace_id=TRACE,
        span_id=bytes.fromhex("0102030405060708"),
        parent_span_id=CHILD,
        name="anon",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=T0 + 11,
        end_time_unix_nano=T0 + 12,
    )
    return request


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON: protobuf JSON mapping, but ids in hex (converted here, independently of the server)."""
    doc = json_format.MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for obj in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64decode(obj[key]).hex()
    return json.dumps(doc).encode()


def send(server, how: str, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    url = server.otlp_http_endpoint + "/v1/traces"
    if how == "protobuf":
        r = httpx.post(
            url, content=request.SerializeToString(), headers={"Content-Type": "application/x-protobuf"}
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/x-protobuf"
        return ExportTraceServiceResponse.FromString(r.content)
    if how == "json-gzip":
        r = httpx.post(
            url,
            content=gzip.compress(to_otlp_json(request)),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        return json_format.Parse(r.content, ExportTraceServiceResponse())
    with grpc.insecure_channel(
        f"127.0.0.1:{server.otlp_grpc_port}", compression=grpc.Compression.Gzip
    ) as channel:
        return trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)


@pytest.mark.parametrize("how", ["protobuf", "json-gzip", "grpc-gzip"])
def test_every_otlp_field_round_trips(tmp_path, how):
    with running_server(tmp_path) as server:
        response = send(server, how, build_request())
        assert not response.HasField("partial_success"), response
        server.wait_for_spans(3)
    rows = stored_spans(server.db_path)
    assert set(rows) == {ROOT.hex(), CHILD.hex(), "0102030405060708"}
    root = rows[ROOT.hex()]
    assert root["start_ns"] == T0 and root["Duration"] == 123_456_789
    assert (root["TraceId"], root["ParentSpanId"], root["TraceState"]) == (
        TRACE.hex(),
        "",
        "rojo=00f067aa0ba902b7",
    )
    assert (root["SpanName"], root["SpanKind"], root["StatusCode"], root["StatusMessage"]) == (
        "root",
        "Server",
        "Error",
        "it broke",
    )
    assert root["Flags"] == 0x301
    assert (root["DroppedAttributesCount"], root["DroppedEventsCount"], root["DroppedLinksCount"]) == (
        5,
        6,
        7,
    )
    assert root["SpanAttributes"] == _expected()
    assert root["ServiceName"] == "svc"
    assert root["ResourceAttributes"] == {"service.name": "svc", **_expected("r.")}
    assert (root["ResourceSchemaUrl"], root["ResourceDroppedAttributesCount"]) == (
        "https://opentelemetry.io/schemas/1.21.0",
        4,
    )
    assert (
        root["ScopeName"],
        root["ScopeVersion"],
        root["ScopeSchemaUrl"],
        root["ScopeDroppedAttributesCount"],
    ) == ("my.scope", "1.0.0", "https://scope/schema", 2)
    assert root["ScopeAttributes"] == _expected("sc.")
    assert root["events"] == [
        {"ts": T0 + 5, "name": "ev1", "attrs": _expected("e."), "dropped": 1},
        {"ts": T0 + 6, "name": "ev2", "attrs": {}, "dropped": 0},
    ]
    assert root["links"] == [
        {
            "trace_id": bytes(range(1, 17)).hex(),
            "span_id": bytes(range(1, 9)).hex(),
            "trace_state": "k=v",
            "attrs": _expected("l."),
            "dropped": 3,
            "flags": 0x101,
        }
    ]
    child = rows[CHILD.hex()]
    assert (child["ParentSpanId"], child["SpanKind"], child["StatusCode"], child["Duration"]) == (
        ROOT.hex(),
        "Client",
        "Ok",
        10,
    )
    assert child["events"] == [] and child["links"] == [] and child["ScopeName"] == "my.scope"
    anon = rows["0102030405060708"]
    assert (anon["ServiceName"], anon["ResourceAttributes"], anon["ScopeName"], anon["SpanKind"]) == (
        "unknown_service",
        {},
        "",
        "Internal",
    )
