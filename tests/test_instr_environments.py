"""The instrumentation in other environments (cached temporary venvs, so marked slow): an app on
SQLAlchemy 2.0, and an environment where ``opentelemetry-distro`` is installed next to
tracehound."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import free_port
from tests.instr_support import (
    APP_DIR,
    ROOT,
    SHOP,
    app_env,
    cached_venv,
    children_of,
    code_location,
    get,
    instrument,
    mark_line,
    running_app,
    server_span,
    trace_server,
)

pytestmark = pytest.mark.slow


def _lazy_loads(spans: list[dict]) -> list[dict]:
    root = server_span(spans, "/books")
    return [s for s in children_of(spans, root) if s["attrs"].get("tracehound.orm.lazy_load") == "true"]


def _run_books(tmp_path, bin_dir, **extra) -> tuple[list[dict], str]:
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint,
            bin_dir=bin_dir,
            SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
            SHOP_PORT=str(port),
            **extra,
        )
        with running_app(instrument("python", str(SHOP)), env, APP_DIR, port) as proc:
            get(f"http://127.0.0.1:{port}/books")
        return server.spans(min_count=15), proc.output[1]


def _egg_info_state() -> dict:
    egg = ROOT / "tracehound.egg-info"
    return {p.name: p.stat().st_mtime_ns for p in egg.iterdir()} if egg.exists() else {}


def test_sqlalchemy_20(tmp_path):
    egg_before = _egg_info_state()
    bin_dir = cached_venv("sqlalchemy20", "sqlalchemy>=2.0,<2.1")
    # the cache lives outside the checkout and leaves the checkout's egg-info alone
    assert ROOT not in bin_dir.parents and not (ROOT / ".test-venvs").exists()
    assert _egg_info_state() == egg_before
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import tracehound.instrumentation as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where == str(ROOT / "instrumentation" / "__init__.py")  # the code under test, live
    version = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sqlalchemy; print(sqlalchemy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version.startswith("2.0."), version
    spans, _err = _run_books(tmp_path, bin_dir)
    lazy = _lazy_loads(spans)
    assert len(lazy) == 5
    for span in lazy:
        assert span["attrs"]["tracehound.orm.relationship"] == "Book.author"
        assert len(span["attrs"]["tracehound.db.params_hash"]) == 16
        assert code_location(span)[:2] == (str(SHOP), str(mark_line("lazy")))


@pytest.fixture(scope="module")
def distro_venv():
    return cached_venv("otel-distro", "opentelemetry-distro==0.66b1")


def test_opentelemetry_distro_installed_too_with_documented_fix(tmp_path, distro_venv):
    # The documented fix: name tracehound's distro and configurator explicitly.
    spans, err = _run_books(
        tmp_path, distro_venv, OTEL_PYTHON_DISTRO="tracehound", OTEL_PYTHON_CONFIGURATOR="tracehound"
    )
    assert "tracehound WARNING" not in err, err
    assert len(_lazy_loads(spans)) == 5


def test_opentelemetry_distro_picked_warns_loudly(tmp_path, distro_venv):
    # When opentelemetry-distro's distro and configurator win (install order decides), its
    # defaults apply (gRPC, metrics and logs on) and tracehound says so, once, loudly; with the
    # endpoint and protocol set explicitly, tracehound's span attributes still arrive.
    spans, err = _run_books(
        tmp_path,
        distro_venv,
        OTEL_PYTHON_DISTRO="distro",
        OTEL_PYTHON_CONFIGURATOR="configurator",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    loud = [line for line in err.splitlines() if "tracehound WARNING" in line]
    assert len(loud) == 1, err
    assert "OTEL_PYTHON_DISTRO=tracehound OTEL_PYTHON_CONFIGURATOR=tracehound" in loud[0]
    lazy = _lazy_loads(spans)
    assert len(lazy) == 5
    assert code_location(lazy[0])[:2] == (str(SHOP), str(mark_line("lazy")))


def test_doctor_reports_two_distros(distro_venv):
    env = app_env("http://127.0.0.1:1", bin_dir=distro_venv)
    done = subprocess.run(
        [str(distro_venv / "tracehound"), "doctor", "--no-probe"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "OTEL_PYTHON_DISTRO=tracehound and OTEL_PYTHON_CONFIGURATOR=tracehound" in done.stdout
