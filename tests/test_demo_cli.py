"""``tracehound demo`` failure paths, run as the real command in a subprocess (free ports)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from tracehound.demo.cli import findings_table


def _demo(tmp_path, *args, timeout=180):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for key in [k for k in env if k.startswith("TRACEHOUND_")]:
        del env[key]
    return subprocess.run(
        [sys.executable, "-c", "from tracehound.cli import main; main()", "demo", "--exit", "--duration", "2",
         "--db", str(tmp_path / "th.duckdb"), "--workdir", str(tmp_path / "work"), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_a_taken_port_stops_the_demo_with_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _demo(tmp_path, "--port", str(free_port()), "--otlp-http-port", str(port),
                       "--otlp-grpc-port", str(free_port()))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: port {port} (--otlp-http-port) is already in use on 127.0.0.1: stop what uses it or pass "
        "--otlp-http-port N"
    ]


def test_a_failing_piece_stops_the_demo_and_its_children(tmp_path):
    ports = [free_port(), free_port(), free_port()]
    result = _demo(tmp_path, "--port", str(ports[0]), "--otlp-http-port", str(ports[1]),
                   "--otlp-grpc-port", str(ports[2]), "--database-url", "postgresql+psycopg://nobody@127.0.0.1:9/x")  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    reasons = ("exited with code", "did not answer", "seeding the bookshop database failed")
    assert last.startswith("Error: ") and any(r in last for r in reasons), last
    for port in ports:  # every child stopped: nothing listens on the ports any more
        with socket.socket() as s:
            # SO_REUSEADDR, as servers use: TIME_WAIT leftovers of closed connections do not count,
            # a socket still listening does.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_findings_table_lists_kind_endpoint_location_and_impact():
    table = findings_table(
        [{"kind": "n_plus_one_query", "endpoint": "/books", "impact_ms": 1234.5,
          "code_location": {"filepath": "/x/demo/app/pages.py", "lineno": 40, "function": "book_list"}}]
    )  # fmt: skip
    header, row = table.splitlines()
    assert header.split() == ["KIND", "ENDPOINT", "CODE", "LOCATION", "IMPACT"]
    assert row.split()[:2] == ["n_plus_one_query", "/books"]
    assert "pages.py:40 book_list()" in row and row.endswith("1,234 ms")


@pytest.mark.slow
def test_without_exit_the_demo_serves_until_ctrl_c_then_exits_cleanly(tmp_path):
    ports = [free_port(), free_port(), free_port()]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for key in [k for k in env if k.startswith("TRACEHOUND_")]:
        del env[key]
    demo = subprocess.Popen(
        [sys.executable, "-c", "from tracehound.cli import main; main()", "demo", "--duration", "2",
         "--workdir", str(tmp_path / "work"), "--port", str(ports[0]), "--otlp-http-port", str(ports[1]),
         "--otlp-grpc-port", str(ports[2])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        lines = []
        for line in demo.stdout:  # blocks until the demo prints; the fixture timeout bounds it
            lines.append(line)
            if line.startswith("Serving until Ctrl-C"):
                break
        assert lines and lines[-1].startswith("Serving until Ctrl-C"), "".join(lines) + demo.stderr.read()
        assert f"Open http://127.0.0.1:{ports[0]}/" in "".join(lines)
        app_port = int(re.search(r"Driving load at http://127\.0\.0\.1:(\d+)", "".join(lines)).group(1))
        time.sleep(2)  # still serving: the API answers
        assert demo.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/api/status", timeout=10) as response:
            assert json.load(response)["traces_analyzed"] > 0
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, err
    assert err.strip().splitlines()[-1] == "Stopped."
    for port in [*ports, app_port]:  # the server, its listeners and the bookshop are gone
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    logs = {p.name for p in (tmp_path / "work").glob("*.log")}
    assert {"tracehound-server.log", "bookshop-app.log", "rate-stub.log"} <= logs
