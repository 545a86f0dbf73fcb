"""``tracehound doctor`` against a real ``tracehound serve``: configurations under which tracing
would fail are problems with one specific "To fix" line each (SDK disabled, non-OTLP exporter,
a protocol the SDK refuses, an endpoint answering 401/404/405), and the configured OTLP headers
are sent with the probe."""

from __future__ import annotations

import subprocess

import pytest
from tracehound.instrumentation.doctor import diagnose

from tests.instr_support import VENV_BIN, app_env, instrument

TOKEN = "s3cret-ingest"


def _env(endpoint: str, **extra: str) -> dict:
    env = app_env(endpoint, **extra)
    env.pop("OTEL_BSP_SCHEDULE_DELAY", None)
    return env


def _problems(env: dict, check_endpoint: bool = True) -> list[tuple[str, str]]:
    return diagnose(env, check_endpoint=check_endpoint).problems


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    from tests.support.server import running_server

    with running_server(tmp_path_factory.mktemp("doctor"), "--ingest-token", TOKEN) as server:
        yield server


def test_ingest_token_401_then_headers_sent(token_server):
    base = token_server.otlp_http_endpoint
    problems = _problems(_env(base))
    assert len(problems) == 1, problems
    what, todo = problems[0]
    assert what == f"the trace endpoint {base}/v1/traces answers with HTTP 401 to an empty export"
    assert todo.startswith('set OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer <token>"')
    assert "--ingest-token" in todo
    # the configured headers go with the probe: generic, then the traces-specific one wins
    assert _problems(_env(base, OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer {TOKEN}")) == []
    wrong = _env(
        base,
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer {TOKEN}",
        OTEL_EXPORTER_OTLP_TRACES_HEADERS="authorization=Bearer wrong",
    )
    assert [p[1] for p in _problems(wrong)] == [todo]
    # and the CLI says so with exit 1
    done = subprocess.run(
        [str(VENV_BIN / "tracehound"), "doctor"], env=_env(base), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout
    assert "No problems found" not in done.stdout
    assert "HTTP 401 to an empty export. To fix: set OTEL_EXPORTER_OTLP_HEADERS=" in done.stdout


def test_wrong_paths_404_and_405(token_server):
    base = token_server.otlp_http_endpoint
    header = {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {TOKEN}"}
    # a base URL that already ends in /v1/traces: the exporter posts to /v1/traces/v1/traces
    (what, todo), *rest = _problems(_env(f"{base}/v1/traces", **header))
    assert not rest and "HTTP 404" in what and todo.startswith("wrong path:"), (what, todo)
    # a URL that only answers GET
    env = _env(base, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{base}/healthz", **header)
    (what, todo), *rest = _problems(env)
    assert not rest and "HTTP 405" in what and "does not take OTLP exports" in todo, (what, todo)


def test_configurations_that_record_or_send_nothing():
    env = _env("http://127.0.0.1:1")
    cases = {
        "OTEL_SDK_DISABLED": ("true", "OTEL_SDK_DISABLED=true", "unset OTEL_SDK_DISABLED"),
        "OTEL_TRACES_EXPORTER": ("console", "console prints them", "set it to otlp"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": ("http/json", "Unsupported OTLP protocol", "http/protobuf"),
    }
    for name, (value, what_part, todo_part) in cases.items():
        problems = _problems({**env, name: value}, check_endpoint=False)
        assert len(problems) == 1, (name, problems)
        assert what_part in problems[0][0] and todo_part in problems[0][1], (name, problems)
    none = _problems({**env, "OTEL_TRACES_EXPORTER": "none"}, check_endpoint=False)
    assert [p[0] for p in none] == [
        "OTEL_TRACES_EXPORTER=none: no span is sent to tracehound (no OTLP exporter)"
    ]
    # console next to otlp still sends to tracehound
    assert _problems({**env, "OTEL_TRACES_EXPORTER": "otlp,console"}, check_endpoint=False) == []
    assert _problems(env, check_endpoint=False) == []


def test_unsupported_protocol_really_fails_in_the_sdk():
    """The doctor's protocol mapping matches the SDK: http/json breaks start-up."""
    env = _env("http://127.0.0.1:1", OTEL_EXPORTER_OTLP_PROTOCOL="http/json")
    done = subprocess.run(
        instrument("python", "-c", "print('ran')"), env=env, capture_output=True, text=True, timeout=60
    )
    assert "Unsupported OTLP protocol 'http/json'" in done.stderr
