"""``tracehound demo``: server + rate stub + the bookshop under ``opentelemetry-instrument`` + load.

Every piece is a child process (logs in the work directory): ``tracehound serve`` (this Python,
``-c "from tracehound.cli import main; main()" serve ...``), the rate stub, the bookshop (seeded
first without instrumentation, then run by the ``opentelemetry-instrument`` launcher next to this
Python). A taken port or a piece that dies stops the demo with one line naming it (:class:`DemoError`)
and every child is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from tracehound.settings import ServerSettings

#: The analyzer settings the demo runs with: short quiet time and aggregation interval so the
#: windowed detectors (cache hit ratio, slow queries) report within a short run.
DEMO_CONFIG = """\
[worker]
quiet_seconds = 1.0
interval_seconds = 0.5
aggregate_interval_seconds = 3.0
"""


def demo_workdir(workdir: Path | None) -> Path:
    """The demo's work directory: ``workdir`` (created if missing) or a new temporary directory."""
    path = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tracehound-demo-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def fresh_demo_db(workdir: Path) -> Path:
    """``workdir/tracehound.duckdb``, with any file left there by an earlier demo run removed (and
    its write-ahead log), so the printed findings are this run's only."""
    db = workdir / "tracehound.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    return db


class DemoError(click.ClickException):
    """A piece of the demo could not start or died; the message says which and what to do."""


def port_free(host: str, port: int) -> bool:
    """True when ``port`` can be bound on ``host`` now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    """GET ``url`` and decode JSON; raises ``OSError`` (incl. ``urllib.error.URLError``) on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def launcher() -> str:
    """Path of ``opentelemetry-instrument`` next to this Python (or on PATH)."""
    candidate = Path(sys.executable).parent / "opentelemetry-instrument"
    if candidate.exists():
        return str(candidate)
    import shutil

    found = shutil.which("opentelemetry-instrument")
    if not found:
        raise DemoError(
            "opentelemetry-instrument not found: pip install 'tracehound[server,demo]' in this Python"
        )
    return found


class Piece:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise DemoError(f"the {self.name} exited with code {code}: {self.tail()} (log: {self.log_path})")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


class Demo:
    """The running demo; use as a context manager so children always stop."""

    def __init__(self, settings: ServerSettings, database_url: str | None, redis_url: str | None,
                 workdir: Path | None = None):  # fmt: skip
        self.settings = settings
        self.database_url, self.redis_url = database_url, redis_url
        self.workdir = demo_workdir(workdir)
        self.pieces: list[Piece] = []
        host = settings.host
        self.api_url = f"http://{host}:{settings.port}"
        self.otlp_url = f"http://{host}:{settings.otlp_http_port}"
        self.app_port, self.stub_port = free_port(), free_port()
        self.app_url = f"http://127.0.0.1:{self.app_port}"
        self.stub_url = f"http://127.0.0.1:{self.stub_port}"

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the children, newest first (the app flushes its spans before the server stops)."""
        while self.pieces:
            self.pieces.pop().stop()

    def _env(self, **extra) -> dict:
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env.update({k: str(v) for k, v in extra.items() if v is not None})
        return env

    def _start(self, name: str, argv: list[str], env: dict) -> Piece:
        piece = Piece(name, argv, env, self.workdir / f"{name.replace(' ', '-')}.log")
        self.pieces.append(piece)
        return piece

    def _wait_http(self, piece: Piece, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            piece.check()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the {piece.name} did not answer {url} within {timeout_s:.0f} s (log: {piece.log_path})"
                )
            time.sleep(0.2)

    def check_ports(self) -> None:
        """Raise :class:`DemoError` naming the first configured port already in use."""
        s = self.settings
        for flag, port in (("--port", s.port), ("--otlp-http-port", s.otlp_http_port),
                           ("--otlp-grpc-port", s.otlp_grpc_port)):  # fmt: skip
            if not port_free(s.host, port):
                raise DemoError(
                    f"port {port} ({flag}) is already in use on {s.host}: stop what uses it or pass {flag} N"
                )

    def start_server(self) -> None:
        s = self.settings
        config = self.workdir / "tracehound.toml"
        config.write_text(DEMO_CONFIG)
        argv = [sys.executable, "-c", "from tracehound.cli import main; main()", "serve", "--db", str(s.db),
                "--host", s.host, "--port", str(s.port), "--otlp-http-port", str(s.otlp_http_port),
                "--otlp-grpc-port", str(s.otlp_grpc_port), "--config", str(config)]  # fmt: skip
        piece = self._start("tracehound server", argv, self._env())
        self._wait_http(piece, f"{self.otlp_url}/healthz", 60)
        self._wait_http(piece, f"{self.api_url}/api/status", 60)

    def start_app(self) -> None:
        stub = self._start("rate stub", [sys.executable, "-m", "tracehound.demo.app.stub", "--port",
                                         str(self.stub_port)], self._env())  # fmt: skip
        self._wait_http(stub, f"{self.stub_url}/healthz", 30)
        import tracehound.demo.app as app_package

        app_env = self._env(
            TRACEHOUND_DEMO_DATA_DIR=self.workdir,
            TRACEHOUND_DEMO_DATABASE_URL=self.database_url,
            TRACEHOUND_DEMO_REDIS_URL=self.redis_url,
            TRACEHOUND_DEMO_STUB_URL=self.stub_url,
        )
        seed = subprocess.run([sys.executable, "-m", "tracehound.demo.app", "--seed-only"], env=app_env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if seed.returncode:
            last = (seed.stderr or seed.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DemoError(f"seeding the bookshop database failed: {last[0]}")
        traced_env = self._env(
            **{k: v for k, v in app_env.items() if k.startswith("TRACEHOUND_DEMO_")},
            OTEL_SERVICE_NAME="bookshop",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_ENDPOINT=self.otlp_url,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_BSP_SCHEDULE_DELAY=500,
            TRACEHOUND_CODE_INCLUDE=Path(app_package.__file__).parent,
        )
        argv = [launcher(), "--service_name", "bookshop", sys.executable, "-m", "tracehound.demo.app",
                "--no-seed", "--port", str(self.app_port)]  # fmt: skip
        app = self._start("bookshop app", argv, traced_env)
        self._wait_http(app, f"{self.app_url}/api/health", 60)

    def check_alive(self) -> None:
        for piece in self.pieces:
            piece.check()

    def status(self) -> dict:
        return get_json(f"{self.api_url}/api/status")

    def wait_for_analysis(self, timeout_s: float = 90.0, settle_s: float = 4.0) -> dict:
        """Poll ``/api/status`` until ``traces_pending`` is 0 and the span count stopped growing for
        ``settle_s`` (longer than the analyzer's aggregation interval). Returns the last status."""
        deadline = time.monotonic() + timeout_s
        last_spans, stable_since = None, time.monotonic()
        while True:
            self.check_alive()
            status = self.status()
            spans = status.get("spans_total")
            if spans != last_spans:
                last_spans, stable_since = spans, time.monotonic()
            if status.get("traces_pending") == 0 and spans and time.monotonic() - stable_since >= settle_s:
                return status
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the analysis did not finish within {timeout_s:.0f} s (last status: {status})"
                )
            time.sleep(0.5)

    def findings(self) -> list[dict]:
        """Every finding from ``GET /api/findings`` (following ``next_cursor``), by impact."""
        items, cursor = [], None
        while True:
            query = "?limit=500" + (f"&cursor={urllib.request.quote(cursor)}" if cursor else "")
            page = get_json(f"{self.api_url}/api/findings{query}")
            if isinstance(page, list):
                return page
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items
