"""Server lifecycle against a real ``tracehound serve``: durability under SIGKILL, SIGTERM flush,
backpressure (503 + Retry-After, gRPC UNAVAILABLE + RetryInfo), ingest token, startup errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.collector_rows import stored_spans
from tests.conftest import free_port
from tests.support.server import running_server

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACEHOUND = str(Path(sys.executable).parent / "tracehound")


def make_request(n: int, tag: str = "x") -> tuple[ExportTraceServiceRequest, list[str]]:
    """``n`` spans with fresh random ids; returns the request and its span ids (hex)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="life"))
    ss = rs.scope_spans.add()
    trace_id = os.urandom(16)
    ids = []
    now = time.time_ns()
    for i in range(n):
        span_id = os.urandom(8)
        span = ss.spans.add(
            trace_id=trace_id,
            span_id=span_id,
            name=f"{tag}{i}",
            kind=3,
            start_time_unix_nano=now + i,
            end_time_unix_nano=now + i + 1000,
        )
        span.attributes.add(key="db.statement", value=AnyValue(string_value="SELECT 1"))
        ids.append(span_id.hex())
    return request, ids


class Sender:
    """Threads that POST batches until stopped, recording the span ids of acknowledged exports."""

    def __init__(self, url: str, threads: int = 3, batch: int = 200):
        self.url, self.batch = url, batch
        self.acked: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self):
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                request, ids = make_request(self.batch)
                try:
                    r = client.post(self.url, content=request.SerializeToString(), headers=PROTOBUF)
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                if r.status_code == 200:
                    self.acked.extend(ids)
                else:
                    self.refused += 1

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)


@pytest.mark.slow
def test_sigkill_mid_ingest_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "th.duckdb"
    (tmp_path / "a").mkdir()
    with running_server(tmp_path / "a", db_path=db) as server:
        sender = Sender(server.otlp_http_endpoint + "/v1/traces")
        deadline = time.monotonic() + 20
        while len(sender.acked) < 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # SIGKILL: no flush, no checkpoint
        sender.stop()
    acked = list(sender.acked)
    assert len(acked) >= 3000
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "b", db_path=db) as again:  # reopens (WAL replay) and serves
        request, ids = make_request(3, "after")
        r = httpx.post(
            again.otlp_http_endpoint + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF
        )
        assert r.status_code == 200
    rows = stored_spans(db)
    missing = [i for i in acked if i not in rows]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged spans lost"
    assert all(i in rows for i in ids)


def test_sigterm_flushes_everything_accepted_and_exits_0(tmp_path):
    with running_server(tmp_path) as server:
        sender = Sender(server.otlp_http_endpoint + "/v1/traces", threads=3, batch=300)
        deadline = time.monotonic() + 60
        while len(sender.acked) < 600:
            assert time.monotonic() < deadline, f"only {len(sender.acked)} spans acked in 60 s"
            time.sleep(0.02)
        code = server.stop()  # SIGTERM while requests are in flight
        sender.stop()
    assert code == 0
    assert "spans committed" in server.log()
    rows = stored_spans(server.db_path)
    assert all(i in rows for i in sender.acked)


def _refuse_until_busy(send, attempts: int = 400):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: send(), range(attempts)))
    return results


def test_full_queue_answers_503_with_retry_after(tmp_path):
    with running_server(tmp_path, "--queue-max-spans", "1") as server:
        url = server.otlp_http_endpoint + "/v1/traces"
        bodies = [make_request(1000)[0].SerializeToString() for _ in range(8)]

        def send():
            r = httpx.post(url, content=bodies[threading.get_ident() % 8], headers=PROTOBUF, timeout=30)
            return r.status_code, r.headers.get("retry-after"), r.content

        results = _refuse_until_busy(send, 40)
        refused = [r for r in results if r[0] == 503]
        assert refused, "no request was refused with queue-max-spans=1 and 8 concurrent senders"
        assert {r[0] for r in results} <= {200, 503}
        assert all(r[1] == "1" for r in refused)
        assert "--queue-max-spans" in status_pb2.Status.FromString(refused[0][2]).message
        status = server.status()
        assert status["requests_refused_busy"] == len(refused)
        assert status["spans_committed"] == 1000 * (len(results) - len(refused))


def test_grpc_saturation_is_unavailable_with_retry_info(tmp_path):
    with running_server(tmp_path, "--queue-max-spans", "1") as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.otlp_grpc_port}")
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        requests = [make_request(1000)[0] for _ in range(8)]

        def send():
            try:
                stub.Export(requests[threading.get_ident() % 8], timeout=30)
                return None
            except grpc.RpcError as exc:
                return exc

        errors = [e for e in _refuse_until_busy(send, 40) if e is not None]
        channel.close()
        assert errors, "no call was refused with queue-max-spans=1 and 8 concurrent callers"
        assert {e.code() for e in errors} == {grpc.StatusCode.UNAVAILABLE}
        details = dict(errors[0].trailing_metadata())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(details)
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry)
        assert retry.retry_delay.seconds == 1


def test_ingest_token_is_required_when_set(tmp_path):
    with running_server(tmp_path, env={"TRACEHOUND_INGEST_TOKEN": "s3cret"}) as server:
        url = server.otlp_http_endpoint + "/v1/traces"
        body = make_request(1)[0].SerializeToString()
        assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 401
        assert (
            httpx.post(url, content=body, headers={**PROTOBUF, "Authorization": "Bearer nope"}).status_code
            == 401
        )
        ok = httpx.post(url, content=body, headers={**PROTOBUF, "Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{server.otlp_grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as denied:
                stub.Export(make_request(1)[0], timeout=10)
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.Export(make_request(1)[0], timeout=10, metadata=[("authorization", "Bearer s3cret")])
        assert server.wait_for_spans(2)["spans_committed"] == 2


def _serve(tmp_path, *args, db=None, timeout=30, env=None):
    return subprocess.run(
        [
            TRACEHOUND,
            "serve",
            "--db",
            str(db or tmp_path / "x.duckdb"),
            "--port",
            str(free_port()),
            "--otlp-http-port",
            str(free_port()),
            "--otlp-grpc-port",
            str(free_port()),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_locked_database_exits_1_with_one_line(tmp_path):
    with running_server(tmp_path) as server:
        result = _serve(tmp_path, db=server.db_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use by another process" in lines[0] and str(server.db_path) in lines[0]


@pytest.mark.parametrize("flag", ["--otlp-http-port", "--otlp-grpc-port", "--port"])
def test_taken_port_exits_1_naming_the_flag(tmp_path, flag):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, flag, str(port))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and str(port) in lines[0], result.stderr


def test_bad_duckdb_memory_limit_exits_1_with_one_line(tmp_path):
    result = _serve(tmp_path, env={"TRACEHOUND_DUCKDB_MEMORY_LIMIT": "banana"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TRACEHOUND_DUCKDB_MEMORY_LIMIT='banana'" in lines[0]


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_duckdb_threads_is_refused_with_one_line(tmp_path, value):
    result = _serve(tmp_path, env={"TRACEHOUND_DUCKDB_THREADS": value})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"TRACEHOUND_DUCKDB_THREADS={value!r} is not a whole number" in lines[0]


def test_serve_runs_duckdb_with_one_thread_unless_told_otherwise(tmp_path):
    for env, expected in (({}, 1), ({"TRACEHOUND_DUCKDB_THREADS": "2"}, 2)):
        (tmp_path / str(expected)).mkdir()
        with running_server(tmp_path / str(expected), "--no-analyzer", env=env) as server:
            r = httpx.get(server.otlp_http_endpoint + "/v1/status", timeout=10)
            assert r.status_code == 200
            assert (r.json()["duckdb_threads"], r.json()["writer_threads"]) == (expected, 2)


def test_newer_database_schema_is_refused_with_one_line(tmp_path):
    import duckdb

    db = tmp_path / "new.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE tracehound_schema (component VARCHAR PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("INSERT INTO tracehound_schema VALUES ('store', 999)")
    con.close()
    result = _serve(tmp_path, db=db)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "version 999" in lines[0] and "upgrade tracehound" in lines[0]


def test_storage_failure_answers_retry_later_not_500(tmp_path):
    """DuckDB out of memory (a 1 MB buffer pool) on a 2,000-span request is a storage failure that
    may pass: 503 + Retry-After over HTTP, UNAVAILABLE + RetryInfo over gRPC (OTLP exporters retry
    those, not 500), and the server goes on serving."""
    from bench.spans import make_request as bench_request

    env = {"TRACEHOUND_DUCKDB_MEMORY_LIMIT": "1MB"}
    with running_server(tmp_path, "--no-analyzer", env=env) as server:
        body = bench_request(2000, seed=1).SerializeToString()
        r = httpx.post(server.otlp_http_endpoint + "/v1/traces", content=body, headers=PROTOBUF, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.content
        status = status_pb2.Status.FromString(r.content)
        assert status.code == 14 and "retry later" in status.message
        with (
            grpc.insecure_channel(f"127.0.0.1:{server.otlp_grpc_port}") as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(bench_request(2000, seed=2), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        details = status_pb2.Status.FromString(
            dict(refused.value.trailing_metadata())["grpc-status-details-bin"]
        )
        retry = error_details_pb2.RetryInfo()
        assert details.details[0].Unpack(retry) and retry.retry_delay.seconds == 1
        assert server.status()["storage_errors"] == 2
        assert httpx.get(server.otlp_http_endpoint + "/healthz").status_code == 200


def test_unresolvable_host_exits_1_naming_host(tmp_path):
    result = _serve(tmp_path, "--host", "nosuchhost.invalid")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--host" in lines[0] and "nosuchhost.invalid" in lines[0], result.stderr
    assert "--otlp-http-port" not in lines[0]


def test_unrelated_otel_traces_table_is_refused_with_one_line(tmp_path):
    import duckdb

    db = tmp_path / "foreign.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE otel_traces (trace_id VARCHAR, payload JSON)")
    con.close()
    result = _serve(tmp_path, db=db)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not create" in lines[0] and str(db) in lines[0], result.stderr
