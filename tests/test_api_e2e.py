"""End to end: OTel SDK spans -> real ``tracehound serve`` (collector + analyzer + API) -> the API
and pages, behind an API token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.support.server import running_server

pytestmark = pytest.mark.slow
TOKEN = "e2e-token"


def get(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def send_n_plus_one(endpoint: str, requests: int = 3, loads: int = 12) -> list[str]:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    tracer = provider.get_tracer("e2e")
    trace_ids = []
    for _ in range(requests):
        with tracer.start_as_current_span("GET /books", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.route", "/books")
            root.set_attribute("http.request.method", "GET")
            root.set_attribute("http.response.status_code", 200)
            for i in range(loads):
                with tracer.start_as_current_span("SELECT shop", kind=SpanKind.CLIENT) as span:
                    span.set_attribute("db.system", "postgresql")
                    span.set_attribute(
                        "db.statement", "SELECT authors.id FROM authors WHERE authors.id = %(pk_1)s"
                    )
                    span.set_attribute("tracehound.db.params_hash", f"h{i}")
                    span.set_attribute("tracehound.orm.lazy_load", "true")
                    span.set_attribute("tracehound.orm.relationship", "Book.author")
                    span.set_attribute("tracehound.orm.uselist", "false")
                    span.set_attribute("code.filepath", "shop/views.py")
                    span.set_attribute("code.lineno", 57)
                    span.set_attribute("code.function", "list_books")
                    time.sleep(0.006)  # 12 x 6 ms: over the 50 ms total threshold (Sentry default)
        trace_ids.append(f"{root.get_span_context().trace_id:032x}")
    provider.shutdown()
    return trace_ids


def test_spans_become_findings_in_the_api_and_pages(tmp_path):
    with running_server(tmp_path, "--api-token", TOKEN) as server:
        trace_ids = send_n_plus_one(server.otlp_http_endpoint)
        server.wait_for_spans(3 * 13, timeout=30)
        assert get(server.api_url + "/api/findings", token=None)[0] == 401
        deadline, findings = time.monotonic() + 60, []
        while time.monotonic() < deadline and not findings:
            status, body = get(server.api_url + "/api/findings?kind=n_plus_one_query")
            assert status == 200, body
            findings = json.loads(body)["items"]
            time.sleep(0.5)
        assert findings, "the analyzer produced no n_plus_one_query finding within 60 s"
        finding = findings[0]
        assert finding["service"] == "shop" and finding["endpoint"] == "/books"
        status, body = get(server.api_url + f"/api/findings/{finding['id']}")
        detail = json.loads(body)
        assert status == 200 and detail["example"]["trace_id"] in trace_ids
        assert sum(s["highlight"] for s in detail["example"]["trace"]["spans"]) >= 10
        status, page = get(server.api_url + f"/findings/{finding['id']}")
        assert status == 200 and "shop/views.py:57 in list_books" in page
        status, body = get(server.api_url + "/api/status")
        assert status == 200 and json.loads(body)["spans_total"] == 39
        assert get(server.api_url + f"/traces/{trace_ids[0]}")[0] == 200
        assert get(server.api_url + "/")[0] == 200


def test_token_from_environment_and_reanalysis_beside_the_worker(tmp_path):
    """TRACEHOUND_API_TOKEN alone protects API and pages of a real ``tracehound serve`` bound to
    127.0.0.1 by default; POST /api/analyze runs beside the live analyzer worker without a 5xx."""
    env_token = "token-from-env"
    with running_server(tmp_path, env={"TRACEHOUND_API_TOKEN": env_token}) as server:
        assert server.api_url.startswith("http://127.0.0.1:")
        assert get(server.api_url + "/api/status", token=None)[0] == 401
        assert get(server.api_url + "/", token=None)[0] == 401
        assert get(server.api_url + "/api/status", token="wrong")[0] == 401
        assert get(server.api_url + "/api/status", token=env_token)[0] == 200
        send_n_plus_one(server.otlp_http_endpoint, requests=2)
        server.wait_for_spans(2 * 13, timeout=30)
        config = json.loads(get(server.api_url + "/api/config", token=env_token)[1])
        assert config["detectors"]["n_plus_one_query"]["min_count"] == 5
        body = json.dumps({"detectors": {"n_plus_one_query": {"min_count": 3}}}).encode()
        request = urllib.request.Request(
            server.api_url + "/api/analyze",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {env_token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, json.loads(exc.read())
        assert status in (200, 409), answer
        if status == 200:
            assert answer["findings_count"] == len(answer["findings"])
