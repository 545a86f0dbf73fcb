"""Launch modes and robustness of the instrumentation: gunicorn workers (with/without
--preload), flush at exit and on SIGTERM, the Flask reloader, a tracehound server that is down,
tracehound's OTEL_* defaults and their overrides, loud warnings for refused libraries."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import free_port
from tests.instr_support import (
    APP_DIR,
    SHOP,
    VENV_BIN,
    app_env,
    children_of,
    code_location,
    get,
    instrument,
    mark_line,
    running_app,
    server_span,
    trace_server,
)


def _pids(spans: list[dict], route: str = "/pid") -> set[str]:
    return {
        s["attrs"]["app.pid"]
        for s in spans
        if s["kind"] == "Server" and s["attrs"].get("http.route") == route
    }


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_every_worker_exports(tmp_path, preload):
    port = free_port()
    with trace_server(tmp_path) as server:
        # in-memory SQLite: workers booting at once would otherwise race on one file's drop/create
        env = app_env(server.otlp_http_endpoint, SHOP_DB_URL="sqlite://")
        args = [
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            *(["--preload"] if preload else []),
            "shop:app",
        ]
        seen: set[int] = set()
        with running_app(instrument(*args), env, APP_DIR, port):
            deadline = time.monotonic() + 20
            while len(seen) < 2 and time.monotonic() < deadline:
                seen.add(get(f"http://127.0.0.1:{port}/pid")["pid"])
            for _ in range(10):
                get(f"http://127.0.0.1:{port}/pid")
        assert len(seen) == 2
        spans = server.spans(min_count=12)
    # Every worker's spans arrive, including those still queued when the workers stopped.
    assert _pids(spans) == {str(p) for p in seen}


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_flushes_queued_spans(tmp_path, signals):
    """Two SIGTERMs in a row (``killpg`` plus a forwarding reloader parent) must not cut the flush."""
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint,
            SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
            SHOP_PORT=str(port),
            OTEL_BSP_SCHEDULE_DELAY="600000",  # nothing is exported before the signal
        )
        with running_app(instrument("python", str(SHOP)), env, APP_DIR, port) as proc:
            pid = get(f"http://127.0.0.1:{port}/pid")["pid"]
            for n in range(signals):
                time.sleep(0.02 * n)  # the second one lands while the first is flushing
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        assert proc.returncode == -signal.SIGTERM  # still "killed by SIGTERM", after flushing
        spans = server.spans(min_count=5)
    assert _pids(spans) == {str(pid)}
    assert [s["name"] for s in spans].count("shop.startup") == 1  # the first span queued arrived too


def test_normal_exit_flushes(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(APP_DIR)!r})\n"
        "import shop\n"
        "client = shop.app.test_client()\n"
        "assert client.get('/books').status_code == 200\n"
    )
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint,
            SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        done = subprocess.run(
            instrument("python", str(script)), env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        spans = server.spans(min_count=7)
    assert [s for s in spans if s["kind"] == "Server" and s["attrs"].get("http.route") == "/books"]


@pytest.mark.slow
def test_reloader_spans_only_from_serving_process(tmp_path):
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint,
            SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
            SHOP_PORT=str(port),
            SHOP_RELOADER="1",
            # the SDK's default delay: the guard cannot recall spans the parent exported before it
            # reached run_with_reloader (documented in lifecycle.py), and with the suite's 200 ms a
            # loaded machine sometimes takes longer than that; the serving child flushes at SIGTERM
            OTEL_BSP_SCHEDULE_DELAY="5000",
        )
        with running_app(instrument("python", str(SHOP)), env, APP_DIR, port) as proc:
            serving_pid = get(f"http://127.0.0.1:{port}/pid")["pid"]
            assert serving_pid != proc.pid  # the reloader's parent does not serve
        spans = server.spans(min_count=5)
    startups = [s["attrs"]["app.pid"] for s in spans if s["name"] == "shop.startup"]
    # Both processes imported the app (and ran its set-up queries); only the child's spans count.
    assert startups == [str(serving_pid)], [(s["name"], s["attrs"].get("app.pid")) for s in spans]
    assert _pids(spans) == {str(serving_pid)}


def test_server_down_one_warning_and_no_slowdown(tmp_path):
    port, dead = free_port(), free_port()
    env = app_env(
        f"http://127.0.0.1:{dead}",
        SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
        SHOP_PORT=str(port),
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
    )
    with running_app(instrument("python", str(SHOP)), env, APP_DIR, port) as proc:
        latencies = []
        for _ in range(30):
            start = time.perf_counter()
            get(f"http://127.0.0.1:{port}/books")
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
        time.sleep(3)  # several failed export batches
        stop = time.monotonic()
    assert time.monotonic() - stop < 15
    err = proc.output[1]
    warnings = [line for line in err.splitlines() if "cannot export spans" in line]
    assert len(warnings) == 1, err
    assert f"127.0.0.1:{dead}" in warnings[0]
    others = [line for line in err.splitlines() if "cannot export spans" not in line]
    assert not [line for line in others if "Transient error" in line or "export" in line.lower()], err
    assert sorted(latencies)[len(latencies) // 2] < 0.2


LOAD_SCRIPT = """
import sys, time
from opentelemetry import trace
tracer = trace.get_tracer("load")
for i in range(3000):
    with tracer.start_as_current_span(f"work {i % 10}"):
        pass
print("ready", flush=True)
if sys.argv[1] == "sigterm":
    time.sleep(120)
"""


@pytest.mark.parametrize("ending", ["sigterm", "exit"])
def test_server_down_bounded_shutdown_with_a_full_queue(tmp_path, ending):
    """3,000 spans (more than the 2,048-span queue) and the DEFAULT exporter timeout (10 s),
    server down: the process still ends within ~15 s, with one warning and one dropped total."""
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    env = app_env(f"http://127.0.0.1:{free_port()}")
    env.pop("OTEL_BSP_SCHEDULE_DELAY")  # SDK defaults everywhere
    proc = subprocess.Popen(
        instrument("python", str(script), ending),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        start = time.monotonic()
        if ending == "sigterm":
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=40)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert elapsed < 15, (elapsed, err)
    assert proc.returncode == (-signal.SIGTERM if ending == "sigterm" else 0), err
    assert "Queue full" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "cannot export spans" in warnings[0], err
    totals = [line for line in lines if "spans dropped in total" in line]
    assert len(totals) == 1, err
    assert " 3000 spans dropped in total" in totals[0], err
    assert len(lines) == 2, err


def _exporter_of_instrumented_python(env: dict) -> str:
    code = (
        "import os\n"
        "from opentelemetry import trace\n"
        "bsp = trace.get_tracer_provider()._active_span_processor._span_processors[-1]\n"
        "exporter = bsp._batch_processor._exporter\n"
        "inner = getattr(exporter, 'inner', exporter)\n"
        "print(type(inner).__module__, inner._endpoint)\n"
        "for k in ('OTEL_METRICS_EXPORTER', 'OTEL_LOGS_EXPORTER', 'OTEL_EXPORTER_OTLP_PROTOCOL'):\n"
        "    print(k, os.environ.get(k))\n"
    )
    done = subprocess.run(
        instrument("python", "-c", code), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_defaults_without_configuration():
    env = app_env("unused")
    del env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    out = _exporter_of_instrumented_python(env)
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter http://localhost:4318/v1/traces" in out
    assert "OTEL_METRICS_EXPORTER none" in out
    assert "OTEL_LOGS_EXPORTER none" in out
    assert "OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf" in out


def test_otel_environment_overrides_defaults():
    env = app_env(
        "http://collector.example:9999",
        OTEL_METRICS_EXPORTER="console",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:1/custom/traces",
    )
    out = _exporter_of_instrumented_python(env)
    assert "http://127.0.0.1:1/custom/traces" in out
    assert "OTEL_METRICS_EXPORTER console" in out


def _fake_old_psycopg(tmp_path):
    """A site dir whose metadata claims psycopg 3.0.0, which the psycopg instrumentation refuses."""
    site = tmp_path / "fake-site"
    info = site / "psycopg-3.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: psycopg\nVersion: 3.0.0\n")
    return site


def test_refused_library_warns_loudly(tmp_path):
    env = app_env("http://127.0.0.1:1", PYTHONPATH=str(_fake_old_psycopg(tmp_path)))
    done = subprocess.run(
        instrument("python", "-c", "print('app ran')"), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "app ran" in done.stdout
    loud = [line for line in done.stderr.splitlines() if "tracehound WARNING" in line]
    assert len(loud) == 1, done.stderr
    assert "psycopg 3.0.0 is NOT traced" in loud[0]
    assert "psycopg>=3.1.0" in loud[0] and "Lost:" in loud[0] and "Fix:" in loud[0]


def test_doctor(tmp_path):
    env = app_env("http://127.0.0.1:1", PYTHONPATH=str(_fake_old_psycopg(tmp_path)))
    tracehound = [str(VENV_BIN / "tracehound")]
    with trace_server(tmp_path) as server:
        env_ok = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": server.otlp_http_endpoint}
        ok = subprocess.run([*tracehound, "doctor"], env=env_ok, capture_output=True, text=True, timeout=60)
    down = subprocess.run([*tracehound, "doctor"], env=env, capture_output=True, text=True, timeout=60)
    out = ok.stdout
    assert "sqlalchemy" in out and "by tracehound (upstream opentelemetry-instrumentation-sqlalchemy" in out
    assert f"traces -> {server.otlp_http_endpoint}/v1/traces (http/protobuf)" in out
    assert "endpoint answers" in out
    assert "REFUSED  psycopg" in out
    assert "To fix: pip install 'psycopg>=3.1.0'" in out
    assert ok.returncode == 1  # the refused psycopg is a problem
    assert down.returncode == 1
    assert "does not answer. To fix: start the server with 'tracehound serve'" in down.stdout


def test_outbound_http_client_spans(tmp_path):
    port = free_port()
    with trace_server(tmp_path) as server:
        target = f"{server.otlp_http_endpoint}/healthz"
        env = app_env(
            server.otlp_http_endpoint,
            SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
            SHOP_OUTBOUND_URL=target,
        )
        cmd = instrument("flask", "--app", "shop", "run", "--no-reload", "--port", str(port))
        with running_app(cmd, env, APP_DIR, port):
            assert get(f"http://127.0.0.1:{port}/outbound")["status"] == [200, 200]
        spans = server.spans(min_count=10)
    root = server_span(spans, "/outbound")
    clients = [s for s in children_of(spans, root) if s["kind"] == "Client"]
    assert [s["scope"] for s in clients] == [
        "opentelemetry.instrumentation.requests",
        "opentelemetry.instrumentation.httpx",
    ]
    for span, mark in zip(clients, ("requests_get", "httpx_get"), strict=True):
        a = span["attrs"]
        assert a["http.request.method"] == "GET" and a["http.method"] == "GET"
        assert a["url.full"] == target
        assert a["server.address"] == "127.0.0.1"
        assert a["http.response.status_code"] == "200"
        assert code_location(span) == (str(SHOP), str(mark_line(mark)), "shop.register.<locals>.outbound")
