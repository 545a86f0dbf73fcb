"""End to end: the OTel SDK's OTLP exporters -> a real ``tracehound serve`` -> DuckDB."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from tracehound.collector.store import open_database

from tests.support.server import running_server


def test_sdk_http_protobuf_exporter_spans_are_stored(tmp_path):
    with running_server(tmp_path) as server:
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.otlp_http_endpoint + "/v1/traces"))
        )
        tracer = provider.get_tracer("test.scope", "1.2.3")
        with tracer.start_as_current_span("GET /items", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.route", "/items")
            with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.statement", "SELECT * FROM items WHERE id = ?")
                child.set_status(Status(StatusCode.ERROR, "boom"))
        provider.shutdown()
        root_ctx, child_ctx = root.get_span_context(), child.get_span_context()
        status = server.wait_for_spans(2)
        assert status["spans_rejected"] == 0
    con = open_database(server.db_path, read_only=True)
    rows = con.execute(
        'SELECT "SpanId", "TraceId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName", "ScopeName",'
        ' "ScopeVersion", "StatusCode", "StatusMessage", "SpanAttributes", "Duration" FROM otel_traces'
        ' ORDER BY "SpanKind" DESC'
    ).fetchall()
    assert len(rows) == 2
    server_row, client_row = rows
    assert server_row[:10] == (
        f"{root_ctx.span_id:016x}",
        f"{root_ctx.trace_id:032x}",
        "",
        "GET /items",
        "Server",
        "shop",
        "test.scope",
        "1.2.3",
        "Unset",
        "",
    )
    assert server_row[10] == {"http.route": "/items"}
    assert server_row[11] == root.end_time - root.start_time
    assert client_row[0] == f"{child_ctx.span_id:016x}"
    assert client_row[2] == f"{root_ctx.span_id:016x}"
    assert client_row[8:11] == ("Error", "boom", {"db.statement": "SELECT * FROM items WHERE id = ?"})
