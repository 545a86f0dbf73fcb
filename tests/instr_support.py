"""Helpers for the instrumentation tests: run ``tests/apps/shop.py`` under the real
``opentelemetry-instrument`` launcher against a real tracehound server, then read the spans it
stored (``otel_traces``) as plain dicts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "tests" / "apps"
SHOP = APP_DIR / "shop.py"
VENV_BIN = Path(sys.executable).parent


def mark_line(name: str, path: Path = SHOP) -> int:
    """Line number of the ``# MARK:<name>`` comment in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(rf"# MARK:{re.escape(name)}\b", line):
            return number
    raise AssertionError(f"no MARK:{name} in {path}")


def app_env(endpoint: str, bin_dir: Path = VENV_BIN, **extra: str) -> dict:
    """Environment for an instrumented app: venv bin first on PATH, export to ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEHOUND_", "SHOP_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def get(url: str, timeout: float = 10.0):
    """GET ``url`` and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers (fails early when ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"app exited with {proc.returncode}:\n{out}\n{err}")
        try:
            get(url, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def running_app(args: list[str], env: dict, cwd: Path, port: int, ready_path: str = "/pid"):
    """Start ``args`` (in its own session), wait for ``http://127.0.0.1:port/ready_path``, yield
    the process; on exit SIGTERM the whole session and wait. ``proc.output`` holds (out, err)."""
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", proc)
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.output = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.output = proc.communicate()


def instrument(*command: str, service: str = "shop") -> list[str]:
    """``opentelemetry-instrument --service_name SERVICE COMMAND...`` (launcher from PATH)."""
    return ["opentelemetry-instrument", "--service_name", service, *command]


def read_spans(db_path: Path) -> list[dict]:
    """Every stored span as ``{name, kind, service, scope, trace_id, span_id, parent, attrs, resource}``."""
    from tracehound.collector.store import open_database

    con = open_database(db_path, read_only=True)
    try:
        rows = con.execute(
            "SELECT SpanName, SpanKind, ServiceName, ScopeName, TraceId, SpanId, ParentSpanId, "
            "SpanAttributes, ResourceAttributes FROM otel_traces ORDER BY Timestamp"
        ).fetchall()
    finally:
        con.close()
    keys = ("name", "kind", "service", "scope", "trace_id", "span_id", "parent", "attrs", "resource")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def db_spans(spans: list[dict]) -> list[dict]:
    """Spans with a ``db.system`` or ``db.system.name`` attribute."""
    return [s for s in spans if "db.system" in s["attrs"] or "db.system.name" in s["attrs"]]


def children_of(spans: list[dict], root: dict) -> list[dict]:
    """All spans of ``root``'s trace except ``root``."""
    return [s for s in spans if s["trace_id"] == root["trace_id"] and s["span_id"] != root["span_id"]]


def server_span(spans: list[dict], route: str) -> dict:
    """The single Flask server span of ``route``."""
    found = [s for s in spans if s["kind"] == "Server" and s["attrs"].get("http.route") == route]
    assert len(found) == 1, [
        (s["name"], s["attrs"].get("http.route")) for s in spans if s["kind"] == "Server"
    ]
    return found[0]


def code_location(span: dict) -> tuple:
    """``(filepath, lineno, qualified function)`` checked equal under the old and the new names:
    ``code.function.name`` == ``code.namespace`` + "." + ``code.function`` (bare name)."""
    a = span["attrs"]
    old = (a.get("code.filepath"), a.get("code.lineno"))
    new = (a.get("code.file.path"), a.get("code.line.number"))
    assert old == new, (old, new)
    function, namespace = a.get("code.function"), a.get("code.namespace")
    assert function and "." not in function, a
    qualified = f"{namespace}.{function}" if namespace else function
    assert a.get("code.function.name") == qualified, a
    return (*old, qualified)


class _Server:
    """A real tracehound server (``support.server.running_server``) seen by these tests."""

    def __init__(self, inner):
        self.inner = inner
        self.otlp_http_endpoint = inner.otlp_http_endpoint

    def spans(self, min_count: int = 1, timeout: float = 20.0) -> list[dict]:
        """Wait for ``min_count`` spans, stop the server, return all stored spans."""
        with contextlib.suppress(Exception):
            self.inner.wait_for_spans(min_count, timeout)
        self.inner.stop()
        return read_spans(self.inner.db_path)


@contextlib.contextmanager
def trace_server(tmp_path: Path, *extra_args: str):
    """Yield a :class:`_Server` around a real ``tracehound serve`` on free ports."""
    from tests.support.server import running_server

    with running_server(tmp_path, *extra_args) as server:
        yield _Server(server)


def venv_cache_dir() -> Path:
    """Where :func:`cached_venv` keeps its venvs: ``TRACEHOUND_TEST_VENVS`` or, outside the
    repository, ``$TMPDIR/tracehound-test-venvs-<hash of pyproject.toml, this checkout and its
    venv>`` (one cache per worktree and dependency set)."""
    import hashlib
    import tempfile

    configured = os.environ.get("TRACEHOUND_TEST_VENVS")
    if configured:
        return Path(configured)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"{ROOT}\0{sys.prefix}".encode())
    return Path(tempfile.gettempdir()) / f"tracehound-test-venvs-{digest.hexdigest()[:12]}"


def cached_venv(name: str, *requirements: str) -> Path:
    """A venv (``--system-site-packages``) holding ``requirements`` and the
    ``opentelemetry-instrument`` launcher, under :func:`venv_cache_dir` (never inside the
    repository); reused while the requirements stay the same (a marker file records them).
    Returns its ``bin`` directory.

    tracehound is NOT pip-installed into it (an editable install would rewrite the checkout's
    ``tracehound.egg-info``): a ``.pth`` file adds the test interpreter's site-packages (which
    holds the editable tracehound and its entry points) after the venv's own packages, so the
    venv's ``requirements`` win and the code under test is always the checkout's current code.
    A ``bin/tracehound`` script is written for the venv's interpreter."""
    import hashlib
    import sysconfig

    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:10]
    home = venv_cache_dir() / f"{name}-{key}"
    bin_dir = home / "bin"
    marker = home / "tracehound-ready"
    if marker.exists():
        return bin_dir
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--system-site-packages", "--clear", str(home)], check=True)
    python = str(bin_dir / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    # --ignore-installed: the launcher script must be this venv's, not the base interpreter's.
    subprocess.run(
        [*pip, "--no-deps", "--ignore-installed", "opentelemetry-instrumentation==0.66b1"], check=True
    )
    site_dir = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site_dir, "tracehound-under-test.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    script = bin_dir / "tracehound"
    script.write_text(f"#!{python}\nimport sys\nfrom tracehound.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    assert (bin_dir / "opentelemetry-instrument").exists()
    marker.write_text("\n".join(requirements))
    return bin_dir
