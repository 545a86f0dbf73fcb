"""Decoder, writer and store fixes from the collector review (issue 2), without a server.

Times past 2262 (span and event), malformed parent / link ids, deeply nested JSON, a batch that
DuckDB refuses among good ones, and the schema checks of ``open_database``.
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tracehound.collector.decode import decode_request
from tracehound.collector.fastdecode import decode_protobuf
from tracehound.collector.otlp_json import OtlpJsonError, parse_otlp_json

U64_MAX = 2**64 - 1
T0 = 1_700_000_000_000_000_000
TRACE = bytes(range(1, 17))


def _request(n: int = 3) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="review"))
    ss = rs.scope_spans.add()
    for i in range(n):
        ss.spans.add(
            trace_id=TRACE,
            span_id=(0xA0 + i).to_bytes(8, "big"),
            name=f"s{i}",
            start_time_unix_nano=T0 + i,
            end_time_unix_nano=T0 + 1000 + i,
        )
    return request


def _both(request: ExportTraceServiceRequest):
    """The same request through the protobuf fast path and the message path."""
    return [decode_protobuf(request.SerializeToString()), decode_request(request)]


def _stored_names(batch) -> list[str]:
    return batch.spans["SpanName"].to_pylist() if batch.spans is not None else []


@pytest.mark.parametrize("field", ["start_time_unix_nano", "end_time_unix_nano"])
def test_span_time_past_2262_is_rejected_not_an_error(field):
    request = _request()
    setattr(request.resource_spans[0].scope_spans[0].spans[1], field, U64_MAX)
    for batch in _both(request):
        assert (batch.count, batch.rejected) == (2, 1)
        assert _stored_names(batch) == ["s0", "s2"]
        assert "'s1' rejected" in batch.error_message() and "2262" in batch.error_message()


def test_event_time_past_2262_rejects_its_span():
    request = _request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].events.add(time_unix_nano=T0 + 5, name="fine")
    spans[1].events.add(time_unix_nano=T0 + 6, name="fine too")
    spans[1].events.add(time_unix_nano=U64_MAX, name="far future")
    spans[2].events.add(time_unix_nano=T0 + 7, name="after")
    for batch in _both(request):
        assert (batch.count, batch.rejected) == (2, 1)
        assert _stored_names(batch) == ["s0", "s2"]
        assert "'s1' rejected" in batch.error_message() and "event" in batch.error_message()
        events = batch.spans["Events"].combine_chunks()
        assert pc.list_value_length(events).to_pylist() == [1, 1]
        flat = events.flatten()
        assert flat.field("Name").to_pylist() == ["fine", "after"]
        assert flat.field("Timestamp").cast(pa.int64()).to_pylist() == [T0 + 5, T0 + 7]


@pytest.mark.parametrize("parent", [bytes.fromhex("abcdef"), bytes(9)])
def test_parent_span_id_of_wrong_length_rejects_the_span(parent):
    request = _request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].parent_span_id = parent
    spans[2].parent_span_id = bytes.fromhex("00000000000000a1")  # a good parent
    for batch in _both(request):
        assert (batch.count, batch.rejected) == (2, 1)
        assert _stored_names(batch) == ["s1", "s2"]
        assert "parent_span_id" in batch.error_message()
        assert batch.spans["ParentSpanId"].to_pylist() == ["", "00000000000000a1"]


@pytest.mark.parametrize(
    ("trace_id", "span_id", "what"),
    [(bytes(3), bytes(8), "trace_id"), (TRACE, b"\x01\x02", "span_id"), (b"", b"", "trace_id")],
)
def test_link_ids_of_wrong_length_reject_the_span(trace_id, span_id, what):
    request = _request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].links.add(trace_id=TRACE, span_id=bytes(range(1, 9)))
    spans[1].links.add(trace_id=trace_id, span_id=span_id)
    for batch in _both(request):
        assert (batch.count, batch.rejected) == (2, 1)
        assert _stored_names(batch) == ["s0", "s2"]
        assert f"link {what}" in batch.error_message()
        links = batch.spans["Links"].to_pylist()
        assert [len(x) for x in links] == [1, 0] and links[0][0]["SpanId"] == "0102030405060708"


def test_json_parent_span_id_of_three_bytes_is_rejected():
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE.hex(),
                                "spanId": "00000000000000b1",
                                "parentSpanId": "abcdef",
                                "name": "short parent",
                            },
                            {"traceId": TRACE.hex(), "spanId": "00000000000000b2", "name": "ok"},
                        ]
                    }
                ]
            }
        ]
    }
    batch = decode_request(parse_otlp_json(json.dumps(doc).encode()))
    assert (batch.count, batch.rejected) == (1, 1)
    assert "parent_span_id 'abcdef'" in batch.error_message()


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_a_clear_error(opener):
    body = (opener * 5000).encode()
    with pytest.raises(OtlpJsonError, match="nesting too deep"):
        parse_otlp_json(body)


def test_unexpected_receiver_error_is_a_logged_internal_status(tmp_path, monkeypatch, caplog):
    """A bug in decoding (simulated: the decoder raises) answers HTTP 500 with a google.rpc.Status
    and gRPC INTERNAL, one line each, never a traceback page; the traceback is logged once."""
    import asyncio
    import logging

    import grpc
    from google.rpc import status_pb2
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    from starlette.testclient import TestClient
    from tracehound.collector import grpc_receiver, http_receiver
    from tracehound.collector.store import open_database
    from tracehound.collector.writer import SpanWriter

    from tests.conftest import free_port

    def broken(body):
        raise RuntimeError("simulated decoder bug")

    monkeypatch.setattr(http_receiver, "decode_protobuf", broken)
    monkeypatch.setattr(grpc_receiver, "decode_protobuf", broken)
    con = open_database(tmp_path / "bug.duckdb")
    writer = SpanWriter(con, 1000)
    writer.start()
    body = _request().SerializeToString()
    caplog.set_level(logging.ERROR, logger="tracehound.collector")
    client = TestClient(http_receiver.create_otlp_http_app(writer, 1 << 20))
    for _ in range(2):
        r = client.post("/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 500
        status = status_pb2.Status.FromString(r.content)
        assert (status.code, status.message) == (13, "internal error: RuntimeError")
    http_records = [rec for rec in caplog.records if "OTLP/HTTP" in rec.getMessage()]
    assert len(http_records) == 2 and http_records[0].exc_info and not http_records[1].exc_info

    async def grpc_call():
        server = grpc_receiver.create_grpc_server(writer, 1 << 20)
        port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                export = channel.unary_unary(
                    f"/{grpc_receiver.SERVICE}/Export",
                    response_deserializer=ExportTraceServiceResponse.FromString,
                )
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await export(body, timeout=10)
                return failed.value
        finally:
            await server.stop(None)

    error = asyncio.run(grpc_call())
    assert error.code() == grpc.StatusCode.INTERNAL and error.details() == "internal error: RuntimeError"
    assert any("OTLP/gRPC" in rec.getMessage() and rec.exc_info for rec in caplog.records)
    writer.stop()
    con.close()


def _newer_database(path, component: str = "store") -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE tracehound_schema (component VARCHAR PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("INSERT INTO tracehound_schema VALUES (?, 999)", [component])
    con.close()


@pytest.mark.parametrize("component", ["store", "analyzer"])
def test_read_only_open_refuses_a_newer_database_with_the_same_message(tmp_path, component):
    from tracehound.collector.schema import SchemaTooNewError
    from tracehound.collector.store import open_database

    db = tmp_path / "newer.duckdb"
    _newer_database(db, component)
    with pytest.raises(SchemaTooNewError, match=rf"'{component}' schema is version 999.*upgrade tracehound"):
        open_database(db, read_only=True)
    duckdb.connect(str(db)).close()  # the refused read-only connection was closed


def test_read_only_open_of_a_current_database_works(tmp_path):
    from tracehound.collector.store import open_database

    open_database(tmp_path / "ok.duckdb").close()
    con = open_database(tmp_path / "ok.duckdb", read_only=True)
    assert con.execute("SELECT count(*) FROM otel_traces").fetchone() == (0,)
    con.close()


def test_unrelated_otel_traces_table_is_refused_not_adopted(tmp_path):
    from tracehound.collector.schema import ForeignTableError
    from tracehound.collector.store import open_database

    db = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE otel_traces (trace_id VARCHAR, span_id VARCHAR, payload JSON)")
    con.close()
    with pytest.raises(ForeignTableError, match="otel_traces table that tracehound did not create.*trace_id"):
        open_database(db)
    con = duckdb.connect(str(db))
    stamped = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'tracehound_schema'"
    ).fetchone()[0]
    assert not stamped or con.execute("SELECT count(*) FROM tracehound_schema").fetchone() == (0,)
    con.close()


@pytest.mark.parametrize(
    ("args", "blocked", "extra"),
    [
        (["serve", "--port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0"], "duckdb", "server"),
        (["serve", "--port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0"], "grpc", "server"),
        (["serve", "--port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0"], "fastapi", "server"),
        (["analyze"], "duckdb", "server"),
        (["report", "--week", "2026-W01", "--format", "md"], "duckdb", "server"),
        (["demo", "--exit", "--duration", "1"], "flask", "server,demo"),
    ],
)
def test_command_without_its_extra_says_what_to_install(tmp_path, args, blocked, extra):
    """A base-only install (simulated: ``sys.modules[name] = None`` blocks the import) gets one
    line naming the extra and exit 2, not a ModuleNotFoundError traceback."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['tracehound', *{args!r}]; "
        "from tracehound.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    command = args[0]
    assert lines == [
        f"tracehound {command} needs the {extra} extra{'s' if ',' in extra else ''}: "
        f"pip install 'tracehound[{extra}]' (no module {blocked})"
    ], result.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written
