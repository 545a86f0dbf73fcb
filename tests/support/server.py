"""Run a real ``tracehound serve`` subprocess for tests.

Usage::

    with running_server(tmp_path) as server:
        exporter = OTLPSpanExporter(endpoint=server.otlp_http_endpoint + "/v1/traces")
        ...
        server.wait_for_spans(10)
    con = open_database(server.db_path, read_only=True)   # only after stop: one process per file

The server gets free ports for all three listeners and ``--db tmp_path/"th.duckdb"``; its
stdout/stderr go to ``tmp_path/"serve.log"`` (shown in assertion messages).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

READY_LINE = "tracehound: OTLP/gRPC"


class ServerProcess:
    """A started ``tracehound serve``; see the module docstring."""

    def __init__(self, tmp_path: Path, extra_args: tuple, env: dict | None, db_path: Path | None = None):
        self.tmp_path = Path(tmp_path)
        self.db_path = Path(db_path) if db_path else self.tmp_path / "th.duckdb"
        self.otlp_http_port = free_port()
        self.otlp_grpc_port = free_port()
        self.api_port = free_port()
        self.host = "127.0.0.1"
        self.otlp_http_endpoint = f"http://{self.host}:{self.otlp_http_port}"
        self.api_url = f"http://{self.host}:{self.api_port}"
        self.log_path = self.tmp_path / "serve.log"
        bin_dir = Path(sys.executable).parent
        full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        full_env.update(env or {})
        args = [
            str(bin_dir / "tracehound"),
            "serve",
            "--db",
            str(self.db_path),
            "--host",
            self.host,
            "--port",
            str(self.api_port),
            "--otlp-http-port",
            str(self.otlp_http_port),
            "--otlp-grpc-port",
            str(self.otlp_grpc_port),
            *extra_args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the start line and ``GET /healthz``; raises AssertionError with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"tracehound serve exited {self.process.returncode}:\n{self.log()}")
            if READY_LINE in self.log():
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(self.otlp_http_endpoint + "/healthz", timeout=2).read()
                    return
            time.sleep(0.05)
        raise AssertionError(f"tracehound serve not ready after {timeout}s:\n{self.log()}")

    def status(self) -> dict:
        """``GET /v1/status`` on the OTLP/HTTP port (ingest counters)."""
        with urllib.request.urlopen(self.otlp_http_endpoint + "/v1/status", timeout=5) as response:
            return json.load(response)

    def wait_for_spans(self, n: int, timeout: float = 20.0) -> dict:
        """Wait until at least ``n`` spans are committed; returns the status dict."""
        deadline = time.monotonic() + timeout
        status = {}
        while time.monotonic() < deadline:
            status = self.status()
            if status["spans_committed"] >= n:
                return status
            time.sleep(0.05)
        raise AssertionError(f"only {status.get('spans_committed')} of {n} spans committed after {timeout}s")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, assert exit status 0; returns it. Safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"tracehound serve did not stop within {timeout}s:\n{self.log()}"
                ) from None
        self._log.close()
        code = self.process.returncode
        assert code == 0, f"tracehound serve exited {code}:\n{self.log()}"
        return code

    def kill(self) -> None:
        """SIGKILL (no flush), for durability tests."""
        self.process.kill()
        self.process.wait()
        self._log.close()


@contextlib.contextmanager
def running_server(tmp_path, *extra_args, env: dict | None = None, db_path=None):
    """Start ``tracehound serve`` on free ports, yield a :class:`ServerProcess`, stop it after.

    ``extra_args`` are appended to the command line (e.g. ``"--max-body-bytes", "65536"``);
    ``env`` adds environment variables. Leaving the block SIGTERMs the server and asserts exit 0
    (unless the test already stopped or killed it).
    """
    server = ServerProcess(tmp_path, extra_args, env, db_path)
    try:
        server.wait_ready()
        yield server
    except BaseException:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        raise
    if server.process.poll() is None or not server._log.closed:
        server.stop()
