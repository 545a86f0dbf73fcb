"""The OTel SDK's three OTLP exporters -> real ``tracehound serve`` -> every field compared.

Expected attribute texts follow pdata's ``Value.AsString()`` (see tracehound.collector.anyvalue);
they are written out here from that rule, not computed by the code under test.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonHttpExporter
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from tests.collector_rows import stored_spans
from tests.support.server import running_server

# attribute value -> its text in otel_traces (pdata AsString)
ATTRIBUTES = {
    "str": ('héllo <&> "q" 日本', 'héllo <&> "q" 日本'),
    "empty_str": ("", ""),
    "bool_t": (True, "true"),
    "bool_f": (False, "false"),
    "int": (-9007199254740993, "-9007199254740993"),
    "float": (1.5, "1.5"),
    "float_whole": (2.0, "2"),
    "float_tiny": (1.25e-7, "1.25e-7"),
    "float_huge": (3e21, "3e+21"),
    "strs": (["a", 'b"c'], '["a","b\\"c"]'),
    "bools": ([True, False], "[true,false]"),
    "ints": ([1, -2, 3], "[1,-2,3]"),
    "floats": ([0.5, 3.0], "[0.5,3]"),
}


def _exporter(kind: str, server):
    if kind == "proto-http":
        return HttpExporter(endpoint=server.otlp_http_endpoint + "/v1/traces")
    if kind == "json-http":
        return JsonHttpExporter(endpoint=server.otlp_http_endpoint + "/v1/traces")
    return GrpcExporter(endpoint=f"127.0.0.1:{server.otlp_grpc_port}", insecure=True)


def _emit(exporter) -> list:
    """Create spans using every feature the SDK exports; returns the ReadableSpans sent."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "fidelity", "deployment.env": "test", "pid": 77, "ok": True}
        ),
        span_limits=SpanLimits(max_span_attributes=len(ATTRIBUTES) + 1, max_event_attributes=2),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(
        "fidelity.scope", "9.8.7", schema_url="https://example.com/s/1.0", attributes={"sc": 1}
    )
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
    )
    linked = SpanContext(0x1234, 0x5678, is_remote=True, trace_state=TraceState([("l", "1")]))
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "GET /items/<id>",
        context=ctx,
        kind=SpanKind.SERVER,
        links=[Link(linked, {"link.attr": "yes", "n": 3})],
    ) as root:
        root.set_attribute("dropped.first", "the SDK drops the oldest attribute over its limit")
        for key, (value, _) in ATTRIBUTES.items():
            root.set_attribute(key, value)
        root.set_attribute("extra", "kept")
        root.add_event(
            "cache.miss", {"dropped": "x", "size": 3, "key.hash": "ab12"}, timestamp=1_700_000_000_123_456_789
        )
        root.add_event("plain")
        with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT) as child:
            child.set_status(Status(StatusCode.ERROR, "deadlock détecté"))
        with tracer.start_as_current_span("ok", kind=SpanKind.PRODUCER) as ok:
            ok.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("internal"):
            pass
        with tracer.start_as_current_span("consume", kind=SpanKind.CONSUMER):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def _expected_text(value) -> str:
    if isinstance(value, tuple):
        value = list(value)
    for original, text in ATTRIBUTES.values():
        if original == value and type(original) is type(value):
            return text
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize("kind", ["proto-http", "json-http", "grpc"])
def test_sdk_exporter_round_trips_every_field(tmp_path, kind):
    with running_server(tmp_path) as server:
        sent = _emit(_exporter(kind, server))
        server.wait_for_spans(len(sent))
        assert server.status()["spans_rejected"] == 0
    stored = stored_spans(server.db_path)
    assert len(stored) == len(sent) == 5
    encoded = {  # what the exporters put on the wire (the SDK omits link trace_state)
        s.span_id.hex(): s
        for rs in encode_spans(sent).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    }
    kinds = {
        SpanKind.SERVER: "Server",
        SpanKind.CLIENT: "Client",
        SpanKind.PRODUCER: "Producer",
        SpanKind.INTERNAL: "Internal",
        SpanKind.CONSUMER: "Consumer",
    }
    statuses = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}
    for span in sent:
        row = stored[f"{span.context.span_id:016x}"]
        assert row["TraceId"] == f"{span.context.trace_id:032x}"
        assert row["ParentSpanId"] == f"{span.parent.span_id:016x}"
        assert row["TraceState"] == "vendor=v1,other=x"
        assert row["SpanName"] == span.name
        assert row["SpanKind"] == kinds[span.kind]
        assert row["start_ns"] == span.start_time
        assert row["Duration"] == span.end_time - span.start_time
        assert (row["StatusCode"], row["StatusMessage"]) == (
            statuses[span.status.status_code],
            span.status.description or "",
        )
        wire = encoded[row["SpanId"]]
        assert row["Flags"] == wire.flags
        assert row["ServiceName"] == "fidelity"
        assert row["ResourceAttributes"] == {
            k: _expected_text(v) for k, v in span.resource.attributes.items()
        }
        assert row["ResourceAttributes"]["pid"] == "77" and row["ResourceAttributes"]["ok"] == "true"
        assert (row["ScopeName"], row["ScopeVersion"], row["ScopeSchemaUrl"]) == (
            "fidelity.scope",
            "9.8.7",
            "https://example.com/s/1.0",
        )
        assert row["ScopeAttributes"] == {"sc": "1"}
        assert row["SpanAttributes"] == {k: _expected_text(v) for k, v in span.attributes.items()}
        assert row["DroppedAttributesCount"] == span.dropped_attributes
        assert row["DroppedEventsCount"] == span.dropped_events
        assert row["DroppedLinksCount"] == span.dropped_links
        assert [(e["ts"], e["name"], e["attrs"], e["dropped"]) for e in row["events"]] == [
            (
                e.timestamp,
                e.name,
                {k: _expected_text(v) for k, v in e.attributes.items()},
                e.dropped_attributes,
            )
            for e in span.events
        ]
        assert [
            (k["trace_id"], k["span_id"], k["trace_state"], k["attrs"], k["dropped"], k["flags"])
            for k in row["links"]
        ] == [
            (
                f"{k.context.trace_id:032x}",
                f"{k.context.span_id:016x}",
                w.trace_state,
                {a: _expected_text(v) for a, v in k.attributes.items()},
                k.dropped_attributes,
                w.flags,
            )
            for k, w in zip(span.links, wire.links, strict=True)
        ]
    root = stored[f"{sent[-1].context.span_id:016x}"]
    assert root["SpanName"] == "GET /items/<id>"
    assert root["DroppedAttributesCount"] == 1
    for key, (_, text) in ATTRIBUTES.items():
        assert root["SpanAttributes"][key] == text, key
    assert root["events"][0]["dropped"] == 1
    assert root["events"][0]["attrs"] == {"key.hash": "ab12", "size": "3"}
    assert root["links"][0]["attrs"] == {"link.attr": "yes", "n": "3"}
