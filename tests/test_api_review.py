"""Review fixes of the API and UI (issue 5 review): filter forms, typed parameters, the analyzer
configuration over the API, honest totals, the weekly page inside the UI, readable evidence and
waterfall labels, time formats of the endpoint page."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from api_data import populate
from fastapi.testclient import TestClient
from tracehound.api.app import create_app
from tracehound.collector.store import open_database

from tracehound.settings import ServerSettings


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    con = open_database(tmp_path_factory.mktemp("review") / "th.duckdb")
    ids = populate(con)
    yield con, TestClient(create_app(con, ServerSettings())), ids
    con.close()


@pytest.fixture
def fresh(tmp_path):
    """A database of its own (tests that write: re-analysis, extra findings)."""
    con = open_database(tmp_path / "th.duckdb")
    ids = populate(con)
    yield con, TestClient(create_app(con, ServerSettings(config_file=None))), ids
    con.close()


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    for word in words:
        assert word in body["error"]["message"], body


def finding_links(html: str) -> set[str]:
    return set(re.findall(r'href="/findings/([0-9a-f]+)"', html))


# ------------------------------------------------------------------ 1. empty form fields = no filter


def test_findings_form_with_one_field_filled_filters_by_it(shop):
    _, client, ids = shop
    page = client.get("/findings?service=&kind=n_plus_one_query&endpoint=&severity=")
    assert page.status_code == 200
    assert finding_links(page.text) == {ids["n1_id"]}
    everything = client.get("/findings?service=&kind=&endpoint=&severity=&since=&until=&sort=")
    assert finding_links(everything.text) == {ids["n1_id"], ids["slow_id"]}
    # The JSON twin treats empty strings the same way.
    items = client.get("/api/findings?service=&kind=slow_query&endpoint=&severity=").json()["items"]
    assert [f["id"] for f in items] == [ids["slow_id"]]
    assert len(client.get("/api/findings?service=&kind=&severity=&since=").json()["items"]) == 2


# ---------------------------------------------------------------------------------- 9. typed params


def test_unknown_kind_or_severity_is_an_error_not_an_empty_list(shop):
    _, client, _ = shop
    assert_error(client.get("/api/findings", params={"kind": "n_plus_two"}), 422, "kind", "n_plus_one_query")
    assert_error(client.get("/api/findings", params={"severity": "urgent"}), 422, "severity", "high")
    assert client.get("/findings", params={"kind": "n_plus_two"}).status_code == 422
    spec = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/findings"]["get"]["parameters"]}
    kind_schema = json.dumps(params["kind"]["schema"])
    assert "slow_endpoint" in kind_schema and "anyOf" in kind_schema


def test_status_and_weekly_report_have_response_models(shop):
    _, client, _ = shop
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def ok_schema(path):
        return spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]

    status_ref = ok_schema("/api/status")["$ref"].rsplit("/", 1)[1]
    assert {"spans_total", "traces_analyzed", "traces_pending", "findings", "last_run_at"} <= set(
        schemas[status_ref]["properties"]
    )
    weekly_ref = ok_schema("/api/reports/weekly")["$ref"].rsplit("/", 1)[1]
    assert {"week", "headline", "routes", "findings", "counts", "top_findings"} <= set(
        schemas[weekly_ref]["properties"]
    )
    body = client.get("/api/status").json()
    assert body["traces_analyzed"] == 120 and body["findings"] == 2


def test_overview_sparklines_come_from_the_endpoints_json_twin(shop):
    _, client, _ = shop
    with_trend = client.get("/api/endpoints", params={"trend": "true"}).json()["items"]
    assert len(with_trend) == 3 and all(len(e["trend_p95_ms"]) == 24 for e in with_trend)
    assert any(v is not None for v in with_trend[0]["trend_p95_ms"])
    assert "trend_p95_ms" not in client.get("/api/endpoints").json()["items"][0]
    page = client.get("/").text
    # Each sparkline's title lists the same p95 values the JSON twin returns.
    for item in with_trend:
        last = [v for v in item["trend_p95_ms"] if v is not None][-1]
        assert f"{last:.1f}" in page


def test_findings_page_accepts_since_until_and_sort(shop):
    _, client, ids = shop
    by_count = client.get("/api/findings", params={"sort": "occurrences"}).json()["items"]
    page = client.get("/findings", params={"sort": "occurrences"}).text
    order = re.findall(r'href="/findings/([0-9a-f]+)"', page)
    assert list(dict.fromkeys(order)) == [f["id"] for f in by_count]
    # A window before any data: nothing; the form keeps the values.
    empty = client.get("/findings", params={"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"})
    assert empty.status_code == 200 and not finding_links(empty.text)
    assert 'value="2020-01-01T00:00:00Z"' in empty.text
    assert client.get("/findings", params={"since": "yesterday"}).status_code == 422
    assert client.get("/findings", params={"sort": "nope"}).status_code == 422


# --------------------------------------------------------------------- 3. symptom kinds not totalled


def test_wasted_total_leaves_out_symptom_kinds(fresh):
    con, client, ids = fresh
    before = client.get("/api/services").json()[0]["impact_ms"]
    con.execute(
        "INSERT INTO findings (id, fingerprint, kind, severity, service, endpoint, title, occurrences, "
        "first_seen, last_seen, impact_ms, evidence, example_trace_ids, fix_hint, updated_at) "
        "VALUES ('ffff000011112222', 'fp-slow-ep', 'slow_endpoint', 'high', 'shop', '/books', "
        "'Slow endpoint /books', 40, TIMESTAMP '2026-11-16 10:00:00', TIMESTAMP '2026-11-16 12:00:00', "
        "987654.0, '{}', [], 'look at the N+1', now())"
    )
    service = client.get("/api/services").json()[0]
    assert service["impact_ms"] == pytest.approx(before) and service["findings"] == 3
    page = client.get("/").text
    foot = re.search(r'class="card-foot"[^>]*>([^<]*)<', page).group(1)
    assert foot.strip() == f"{before / 1000:.2f} s wasted in total"  # the slow endpoint is not added
    assert "not counting slow_endpoint" in page or "symptom" in page
    books = [e for e in client.get("/api/endpoints").json()["items"] if e["endpoint"] == "/books"][0]
    assert books["findings_impact_ms"] < 987654.0


# ------------------------------------------------------------------------ 2. analyzer config via API


def test_get_config_shows_defaults_and_file_overrides(tmp_path):
    toml = tmp_path / "tracehound.toml"
    toml.write_text(
        '[detectors.n_plus_one_query]\nmin_count = 8\n\n[[overrides]]\nroute = "/books"\n'
        'detector = "slow_endpoint"\np95_ms = 5000\n'
    )
    con = open_database(tmp_path / "th.duckdb")
    try:
        client = TestClient(create_app(con, ServerSettings(config_file=toml)))
        body = client.get("/api/config").json()
        assert body["source"] == str(toml)
        assert body["detectors"]["n_plus_one_query"]["min_count"] == 8
        assert body["detectors"]["slow_query"]["min_duration_ms"] == 1000.0
        assert body["detectors"]["slow_query"]["enabled"] is True
        assert body["overrides"] == [
            {"service": None, "route": "/books", "detector": "slow_endpoint", "values": {"p95_ms": 5000}}
        ]
        assert body["worker"]["quiet_seconds"] == 3.0
        default = TestClient(create_app(con, ServerSettings())).get("/api/config").json()
        assert default["detectors"]["n_plus_one_query"]["min_count"] == 5
    finally:
        con.close()


def test_post_analyze_applies_route_overrides_and_rejects_bad_config(fresh):
    con, client, ids = fresh
    plain = client.post("/api/analyze", json={})
    assert plain.status_code == 200, plain.text
    assert [f for f in plain.json()["findings"] if f["kind"] == "n_plus_one_query"] == []
    # 10 lazy loads of ~2 ms each stay under the default min_total_ms=50; lower it for /books only.
    override = {"overrides": [{"route": "/books", "detector": "n_plus_one_query", "min_total_ms": 1}]}
    result = client.post("/api/analyze", json={**override, "since": "2026-11-16T00:00:00Z"})
    assert result.status_code == 200, result.text
    body = result.json()
    found = [f for f in body["findings"] if f["kind"] == "n_plus_one_query"]
    assert len(found) == 1 and found[0]["endpoint"] == "/books" and found[0]["occurrences"] == 40
    assert body["findings_count"] == len(body["findings"]) and body["findings_url"].startswith("/findings")
    assert client.get(f"/api/findings/{found[0]['id']}").status_code == 200
    # A window with no traces analyses nothing.
    none = client.post("/api/analyze", json={**override, "since": "2020-01-01", "until": "2020-01-02"})
    assert none.status_code == 200 and none.json()["findings"] == []
    assert_error(
        client.post("/api/analyze", json={"detectors": {"n_plus_one_querry": {"min_count": 3}}}),
        400,
        "unknown detector 'n_plus_one_querry'",
    )
    assert_error(
        client.post("/api/analyze", json={"detectors": {"n_plus_one_query": {"min_count": "three"}}}),
        400,
        "min_count",
    )
    assert_error(client.post("/api/analyze", json={"since": "soon"}), 422, "since")
    assert_error(
        client.post("/api/analyze", json={"since": "2026-11-17", "until": "2026-11-16"}), 400, "since"
    )


def test_post_analyze_while_another_analysis_runs(fresh):
    """Concurrent re-analyses never give a 5xx: each succeeds or gets a 409 saying to retry."""
    _, client, _ = fresh
    codes = []

    def run():
        codes.append(client.post("/api/analyze", json={}).status_code)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(codes) == 3 and set(codes) <= {200, 409} and 200 in codes


# ------------------------------------------------------------------- 5. weekly report inside the UI


def test_weekly_page_is_inside_the_ui_with_a_favicon(shop):
    _, client, _ = shop
    page = client.get("/reports/weekly", params={"week": "2026-W47"}).text
    assert page.count("<html") == 1 and page.count("<body") == 1
    assert 'class="topbar"' in page and 'href="/findings"' in page
    assert '<link rel="icon"' in page and "2026-W47" in page and "120" in page
    assert "<svg" in page
    for path in ("/", "/findings", "/endpoints", "/nope"):
        assert '<link rel="icon"' in client.get(path).text, path


def test_standalone_weekly_html_stays_self_contained(shop):
    con, _, _ = shop
    from tracehound.api.report import render_report, weekly_report

    html = render_report(weekly_report(con.cursor(), "2026-W47"), "html")
    assert html.startswith("<!doctype html>") and "<style>" in html and "/static/" not in html


# ------------------------------------------------------------------------------- 10. security bits


def test_default_bind_address_is_loopback():
    assert ServerSettings().host == "127.0.0.1"
    out = subprocess.run(
        [str(Path(sys.executable).parent / "tracehound"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = re.sub(r"\s+", " ", out.stdout)
    assert re.search(r"--host TEXT .*?default: 127\.0\.0\.1", text), text


# ------------------------------------------------------------------------------ 7. waterfall labels


def _row(name, kind, attrs, sid, parent="", start_ms=0.0, dur_ms=1.0):
    ts = dt.datetime(2026, 11, 16, 10, 0, 0) + dt.timedelta(milliseconds=start_ms)
    return (ts, sid, parent, name, kind, "shop", int(dur_ms * 1e6), "Unset", "", attrs, {}, "t", [])


def test_waterfall_labels_say_what_the_span_did():
    from tracehound.api.waterfall import build_waterfall

    sql = "SELECT books.id,\n   books.title FROM books WHERE books.id = ?"
    rows = [
        _row("GET /books", "Server", {"http.route": "/books"}, "a" * 16, dur_ms=50),
        _row(
            "SELECT /tmp/pytest-1/bookshop.sqlite",
            "Client",
            {"db.system": "sqlite", "db.statement": sql},
            "b" * 16,
            "a" * 16,
            1,
        ),  # fmt: skip
        _row(
            "cache.get", "Client", {"cache.operation": "get", "cache.key": "book:{n}"}, "c" * 16, "a" * 16, 2
        ),
        _row(
            "GET",
            "Client",
            {"http.request.method": "GET", "url.full": "https://api.example.org/rates?x=1"},
            "d" * 16,
            "a" * 16,
            3,
        ),  # fmt: skip
        _row("jinja2.render", "Internal", {"jinja2.template_name": "books.html"}, "e" * 16, "a" * 16, 4),
    ]
    labels = [s["label"] for s in build_waterfall("f" * 32, rows)["spans"]]
    assert labels == [
        "GET /books",
        "SELECT books.id, books.title FROM books WHERE books.id = ?",
        "cache.get book:{n}",
        "GET https://api.example.org/rates?x=1",
        "jinja2.render books.html",
    ]


def test_trace_page_labels_db_and_cache_rows(shop):
    con, client, ids = shop
    page = client.get(f"/traces/{ids['books_trace']}").text
    assert re.search(r'class="wf-label"[^>]*>SELECT authors\.id, authors\.name FROM authors WHERE', page)
    cache_trace = con.execute(
        "SELECT trace_id FROM trace_summaries WHERE endpoint = '/books/<int:id>' LIMIT 1"
    ).fetchone()[0]
    trace = client.get(f"/api/traces/{cache_trace}").json()
    assert [s["label"] for s in trace["spans"]][1] == "cache.get book:{n}"


# ------------------------------------------------------------------------------ 6. readable evidence

N1_EVIDENCE = {
    "statement": "SELECT authors.id FROM authors WHERE authors.id = ?",
    "source_statement": "SELECT books.id FROM books",
    "relationship": "Book.author",
    "uselist": False,
    "queries_per_request_avg": 47.3,
    "repeated_ms_avg": 23.14,
    "batched_query_estimate": "slowest single repeat",
}
SLOW_EP_EVIDENCE = {
    "dominant": "self",
    "dominant_pct": 76.4,
    "error_rate": 0.0125,
    "p95_split_ms": {"db": 298.766, "self": 967.505},
    "throughput_rpm": 13.0,
    "threshold_ms": 1000.0,
}


def test_evidence_rows_have_labels_units_and_words():
    from tracehound.api.evidence import evidence_rows

    rows = {r["label"]: r for r in evidence_rows("n_plus_one_query", N1_EVIDENCE)}
    assert "Statement" not in rows  # shown on its own above the table
    assert rows["Each lazy load fetches"]["text"] == "one related object (many-to-one)"
    assert rows["Queries per request (mean)"]["text"] == "47.3"
    assert rows["Time in the repeated queries per request (mean)"]["text"] == "23 ms"
    assert rows["Cost of one batched query estimated as"]["text"] == "the slowest of the repeated queries"
    ep = {r["label"]: r for r in evidence_rows("slow_endpoint", SLOW_EP_EVIDENCE)}
    assert ep["Its share of the time"]["text"] == "76.4 %" and ep["Error rate"]["text"] == "1.2 %"
    assert ep["Time split of slow (p95) requests"]["table"] == [("db", "299 ms"), ("self", "968 ms")]
    assert ep["Throughput"]["text"] == "13 requests/min" and ep["Threshold (p95 above)"]["text"] == "1.00 s"


def test_finding_page_shows_evidence_as_words_not_python(fresh):
    con, client, ids = fresh
    con.execute(
        "UPDATE findings SET evidence = ? WHERE id = ?",
        [json.dumps({**N1_EVIDENCE, **SLOW_EP_EVIDENCE}), ids["n1_id"]],
    )
    page = client.get(f"/findings/{ids['n1_id']}").text
    evidence = page[page.index("<h2>Evidence</h2>") : page.index("Example trace")]
    assert "uselist" not in evidence and "False" not in evidence and "{" not in evidence
    assert "one related object (many-to-one)" in evidence and "<th>db</th>" in evidence
    assert (
        "968 ms" in evidence
        and "batched_query_estimate" not in evidence
        and "batched query estimate<" not in evidence
    )
    assert client.get(f"/api/findings/{ids['n1_id']}").json()["evidence"]["uselist"] is False


# ------------------------------------------------------------------------- 4. endpoint time formats


def test_bucket_sizes_and_axis_labels_read_differently():
    from tracehound.api import charts

    assert [charts.duration_text(s) for s in (2.5, 45, 150, 3600, 129600)] == [
        "2.5 s",
        "45 s",
        "2.5 min",
        "1 h",
        "1.5 d",
    ]
    base = dt.datetime(2026, 11, 21, 7, 25, 25)
    points = [
        {"start": base + dt.timedelta(seconds=2.5 * i), "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}
        for i in range(24)
    ]
    svg = str(charts.latency_chart(points, bucket_seconds=2.5))
    labels = re.findall(r">(\d\d:\d\d:\d\d)<", svg)
    assert len(labels) >= 4 and len(set(labels)) == len(labels), labels
    assert charts.time_format(3600, 7 * 86400) == "%m-%d %H:%M" and charts.time_format(300, 3600) == "%H:%M"


def test_endpoint_page_says_bucket_size_in_seconds_under_a_minute(tmp_path):
    con = open_database(tmp_path / "th.duckdb")
    try:
        populate(con, traces_per_route=4)
        client = TestClient(create_app(con, ServerSettings()))
        route = "/books"
        series = client.get("/api/endpoints/series", params={"route": route, "since": "2026-11-16T10:00:00Z",
                                                            "until": "2026-11-16T10:01:00Z"}).json()  # fmt: skip
        assert series["bucket_seconds"] == 2.5
        page = client.get("/endpoints", params={"route": route}).text
        size = client.get("/api/endpoints/series", params={"route": route}).json()["bucket_seconds"]
        assert re.search(r"buckets of [\d.]+ (s|min) ", page) and "0.0 min" not in page
        assert ("min" in re.search(r"buckets of ([\d.]+ \w+)", page).group(1)) == (size >= 60)
    finally:
        con.close()


def test_endpoint_windows_reaching_far_into_the_past_do_not_overflow(shop):
    """A ``since`` centuries back (clamped to 1678, the start of TIMESTAMP_NS) put the trend bucket
    arithmetic past int64 (schemathesis found it): the routes and one route's trend still answer."""
    _, client, _ = shop
    far = {"since": "0001-01-01T00:00:00Z"}
    listed = client.get("/api/endpoints", params=far)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert items and all(i["requests"] > 0 for i in items)
    route = items[0]
    series = client.get(
        "/api/endpoints/series", params={**far, "service": route["service"], "route": route["endpoint"]}
    )
    assert series.status_code == 200, series.text
    assert sum(p["requests"] for p in series.json()["points"]) == route["requests"]
