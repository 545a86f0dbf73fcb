"""``tracehound demo`` failure paths, run as the real command in a subprocess (free ports)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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
