"""The API and HTML pages on a real DuckDB file filled with spans and analyzer rows (see api_data)."""

from __future__ import annotations

import html
import json
import re
import statistics
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import markupsafe
import pytest
from api_data import EVIL, populate
from fastapi.testclient import TestClient
from tracehound.api import charts
from tracehound.api.app import create_app
from tracehound.collector.store import open_database

from tracehound.settings import ServerSettings


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    con = open_database(tmp_path_factory.mktemp("api") / "th.duckdb")
    ids = populate(con)
    client = TestClient(
        create_app(con, ServerSettings(jaeger_url="http://jaeger:16686/", grafana_url="http://g:3000"))
    )
    yield con, client, ids
    con.close()


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    con = open_database(tmp_path_factory.mktemp("evil") / "th.duckdb")
    ids = populate(con, evil=True, traces_per_route=6)
    yield con, TestClient(create_app(con, ServerSettings())), ids
    con.close()


def assert_error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    for word in words:
        assert word in body["error"]["message"]


# ------------------------------------------------------------------------------------------ findings


def test_findings_sorted_by_impact_and_paginated_with_cursor(shop):
    con, client, _ = shop
    everything = client.get("/api/findings").json()["items"]
    impacts = [f["impact_ms"] for f in everything]
    assert len(everything) == 2 and impacts == sorted(impacts, reverse=True)
    stored = dict(con.execute("SELECT id, impact_ms FROM findings").fetchall())
    assert {f["id"]: f["impact_ms"] for f in everything} == pytest.approx(stored)
    first = client.get("/api/findings", params={"limit": 1}).json()
    assert [f["id"] for f in first["items"]] == [everything[0]["id"]] and first["next_cursor"]
    second = client.get("/api/findings", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [f["id"] for f in second["items"]] == [everything[1]["id"]] and second["next_cursor"] is None
    by_count = client.get("/api/findings", params={"sort": "last_seen", "limit": 1}).json()
    again = client.get(
        "/api/findings", params={"sort": "last_seen", "limit": 1, "cursor": by_count["next_cursor"]}
    )
    assert {by_count["items"][0]["id"], again.json()["items"][0]["id"]} == set(stored)
    assert_error(client.get("/api/findings", params={"cursor": "not-a-cursor"}), 400, "cursor")
    wrong_sort = {"sort": "occurrences", "cursor": first["next_cursor"]}
    assert_error(client.get("/api/findings", params=wrong_sort), 400, "sort")


def test_findings_filters_and_time_window(shop):
    con, client, ids = shop
    assert [f["id"] for f in client.get("/api/findings", params={"kind": "slow_query"}).json()["items"]] == [
        ids["slow_id"]
    ]
    assert [f["id"] for f in client.get("/api/findings", params={"severity": "high"}).json()["items"]] == [
        ids["n1_id"]
    ]
    assert [f["id"] for f in client.get("/api/findings", params={"endpoint": "/books"}).json()["items"]] == [
        ids["n1_id"]
    ]
    assert len(client.get("/api/findings", params={"service": "shop"}).json()["items"]) == 2
    assert client.get("/api/findings", params={"service": "other"}).json()["items"] == []
    # A window counts only the occurrences inside it.
    window = {"since": "2026-11-16T10:30:00Z", "until": "2026-11-16T11:00:00+00:00"}
    expected = con.execute(
        "SELECT count(*), sum(impact_ms) FROM finding_occurrences WHERE finding_id = ? "
        "AND \"timestamp\" >= '2026-11-16 10:30:00' AND \"timestamp\" < '2026-11-16 11:00:00'",
        [ids["n1_id"]],
    ).fetchone()
    got = {f["id"]: f for f in client.get("/api/findings", params=window).json()["items"]}
    assert 0 < got[ids["n1_id"]]["occurrences"] == expected[0] < 40
    assert got[ids["n1_id"]]["impact_ms"] == pytest.approx(expected[1])
    assert client.get("/api/findings", params={"since": "2030-01-01T00:00:00"}).json()["items"] == []
    assert_error(
        client.get("/api/findings", params={"since": "2026-11-17T00:00:00", "until": "2026-11-16T00:00:00"}),
        400,
        "after",
    )
    assert_error(client.get("/api/findings", params={"severity": "urgent"}), 422, "severity")
    assert_error(client.get("/api/findings", params={"limit": 0}), 422, "limit")
    assert_error(client.get("/api/findings", params={"since": "yesterday"}), 422, "since")
    assert_error(client.get("/api/findings", params={"until": "0.5"}), 422, "ISO 8601")  # not a Unix time
    assert client.get("/api/findings", params={"since": "2263-01-01T00:00:00Z"}).json()["items"] == []
    assert client.get("/api/endpoints", params={"until": "1001-01-01"}).json()["items"] == []
    assert client.get("/api/findings").json()["items"][0]["last_seen"].endswith("Z")


def test_filter_values_with_quotes_and_sql_are_harmless(shop):
    con, client, _ = shop
    before = con.execute("SELECT count(*) FROM findings").fetchone()[0]
    for value in ["' OR '1'='1", "shop' --", "x'; DROP TABLE findings; --", '"; SELECT 1; --', "%", "\\"]:
        for param in ("service", "endpoint"):
            response = client.get("/api/findings", params={param: value})
            assert response.status_code == 200 and response.json()["items"] == [], (param, value)
        assert_error(client.get("/api/findings", params={"kind": value}), 422, "kind")  # an enum
        assert client.get("/api/endpoints", params={"service": value}).json()["items"] == []
        assert client.get("/findings", params={"service": value}).status_code == 200
        assert_error(client.get("/api/endpoints/series", params={"route": value}), 404, "not found")
        assert_error(client.get(f"/api/findings/{value}"), 404, "not found")
    assert con.execute("SELECT count(*) FROM findings").fetchone()[0] == before


def test_finding_detail_has_example_trace_with_offending_spans_highlighted(shop):
    _, client, ids = shop
    f = client.get(f"/api/findings/{ids['n1_id']}").json()
    assert f["kind"] == "n_plus_one_query" and f["code_location"] == {
        "filepath": "shop/views.py",
        "lineno": 57,
        "function": "list_books",
    }
    assert f["evidence"]["queries_per_request"] == 10 and len(f["recent_occurrences"]) == 20
    example = f["example"]
    assert example["trace_id"] in f["example_trace_ids"]
    highlighted = {s["span_id"] for s in example["trace"]["spans"] if s["highlight"]}
    assert highlighted == set(example["highlight_span_ids"]) and len(highlighted) == 10
    assert all("lazy_load" in "".join(s["attributes"]) for s in example["trace"]["spans"] if s["highlight"])
    assert_error(client.get("/api/findings/0123456789abcdef"), 404, "finding '0123456789abcdef' not found")


def test_finding_page_answers_what_where_cost_fix_and_links_to_jaeger_and_grafana(shop):
    _, client, ids = shop
    page = client.get(f"/findings/{ids['n1_id']}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    text = page.text
    assert "shop/views.py:57 in list_books" in text
    assert "selectinload(Book.author)" in text and "SELECT authors.id" in text
    trace_id = client.get(f"/api/findings/{ids['n1_id']}").json()["example"]["trace_id"]
    assert f'href="http://jaeger:16686/trace/{trace_id}"' in text
    grafana = re.search(r'href="(http://g:3000/explore\?[^"]+)"', text).group(1)
    panes = json.loads(parse_qs(urlsplit(html.unescape(grafana)).query)["panes"][0])
    assert panes["th"]["queries"][0]["query"] == trace_id and panes["th"]["datasource"] == "jaeger"
    assert text.count('class="wf-row hl"') == 10
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none' covers scripts
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert_error(client.get("/findings/nope", headers={"accept": "application/json"}), 404, "finding 'nope'")
    html_404 = client.get("/findings/nope")
    assert html_404.status_code == 404 and "finding &#39;nope&#39; not found" in html_404.text


# ----------------------------------------------------------------------------- endpoints and services


def test_endpoint_statistics_match_the_trace_summaries(shop):
    con, client, _ = shop
    body = client.get("/api/endpoints").json()
    items = {e["endpoint"]: e for e in body["items"]}
    assert set(items) == {"/books", "/books/<int:id>", "/authors"}
    for route, e in items.items():
        durations = [
            r[0] / 1e6
            for r in con.execute(
                "SELECT duration_ns FROM trace_summaries WHERE endpoint = ?", [route]
            ).fetchall()
        ]
        assert e["requests"] == len(durations)
        assert e["p50_ms"] == pytest.approx(statistics.median(durations))
        assert e["p95_ms"] == pytest.approx(statistics.quantiles(durations, n=20, method="inclusive")[-1])
        assert e["p50_ms"] <= e["p95_ms"] <= e["p99_ms"] <= max(durations)
    assert items["/books"]["queries_per_request"] == 11 and items["/books"]["cache_hit_ratio"] is None
    assert items["/books/<int:id>"]["cache_hit_ratio"] == pytest.approx(0.75)
    assert items["/books/<int:id>"]["error_rate"] == pytest.approx(1 / 40)
    first, last = con.execute("SELECT epoch(min(start)), epoch(max(start)) FROM trace_summaries").fetchone()
    assert items["/authors"]["throughput_rps"] == pytest.approx(40 / (last - first))
    only = client.get("/api/endpoints", params={"route": "/authors", "service": "shop"}).json()["items"]
    assert [e["endpoint"] for e in only] == ["/authors"]


def test_endpoint_series_and_page_charts(shop):
    _, client, _ = shop
    series = client.get("/api/endpoints/series", params={"route": "/books"}).json()
    assert sum(p["requests"] for p in series["points"]) == 40
    assert all(p["db_ms"] > 10 and p["template_ms"] == pytest.approx(3.5) for p in series["points"])
    page = client.get("/endpoints", params={"route": "/books"})
    assert page.status_code == 200 and page.text.count("<svg") == 2 and "Where the time goes" in page.text
    listing = client.get("/endpoints").text
    assert listing.count('class="sparkline"') == 3 and "/books/&lt;int:id&gt;" in listing
    assert_error(
        client.get("/api/endpoints/series", params={"route": "/nope"}), 404, "route '/nope' not found"
    )
    assert client.get("/endpoints", params={"route": "/nope"}).status_code == 404


def test_services_and_overview(shop):
    _, client, ids = shop
    services = client.get("/api/services").json()
    assert [s["service"] for s in services] == ["shop"]
    assert services[0]["requests"] == 120 and services[0]["findings"] == 2 and services[0]["endpoints"] == 3
    page = client.get("/").text
    assert f'href="/findings/{ids["n1_id"]}"' in page and "Top findings by impact" in page
    assert page.count('class="sparkline"') == 3


# ------------------------------------------------------------------------------------------- traces


def test_trace_by_id(shop):
    _, client, ids = shop
    trace = client.get(f"/api/traces/{ids['books_trace']}").json()
    spans = trace["spans"]
    assert trace["span_count"] == len(spans) == 13 and spans[0]["kind"] == "Server" and spans[0]["depth"] == 0
    assert all(s["depth"] == 1 for s in spans[1:]) and spans[1]["code_location"]["function"] == "list_books"
    assert [s["start_offset_ms"] for s in spans[1:]] == sorted(s["start_offset_ms"] for s in spans[1:])
    assert client.get(f"/api/traces/{ids['books_trace'].upper()}").status_code == 200
    assert_error(client.get("/api/traces/not-hex"), 400, "32 hex digits")
    assert_error(client.get("/api/traces/" + "0" * 31 + "g"), 400, "32 hex digits")
    assert_error(client.get("/api/traces/" + "ab" * 16), 404, f"trace '{'ab' * 16}' not found")
    page = client.get(f"/traces/{ids['books_trace']}").text
    assert "shop/views.py:42 in list_books" in page and "tracehound.orm.relationship" in page
    assert client.get("/traces/not-hex").status_code == 400


# ------------------------------------------------------------------------------ report, status, misc


def test_weekly_report_json_and_html(shop):
    _, client, _ = shop
    report = client.get("/api/reports/weekly", params={"week": "2026-W47"}).json()
    assert report["week"] == "2026-W47" and report["headline"]["requests"] == 120
    assert client.get("/api/reports/weekly", params={"week": "2026-W40"}).json()["headline"]["requests"] == 0
    assert_error(client.get("/api/reports/weekly", params={"week": "2026-47"}), 400, "2026-W47")
    page = client.get("/reports/weekly", params={"week": "2026-W47"})
    assert page.status_code == 200 and "120" in page.text
    assert client.get("/reports/weekly", params={"week": "bad"}).status_code == 400


def test_status_counts_spans(shop):
    con, client, _ = shop
    body = client.get("/api/status").json()
    assert body["spans_total"] == con.execute("SELECT count(*) FROM otel_traces").fetchone()[0] > 0


def test_openapi_and_unknown_routes(shop):
    _, client, _ = shop
    spec = client.get("/openapi.json").json()
    assert {"/api/findings", "/api/findings/{finding_id}", "/api/traces/{trace_id}"} <= set(spec["paths"])
    assert "/findings/{finding_id}" not in spec["paths"]
    assert_error(client.get("/api/nothing"), 404, "/api/nothing")
    assert_error(client.post("/api/findings"), 405, "POST")


def test_empty_database_pages_say_so(tmp_path):
    con = open_database(tmp_path / "empty.duckdb")
    client = TestClient(create_app(con, ServerSettings()))
    assert "No data yet" in client.get("/").text
    assert "No analysed requests yet" in client.get("/endpoints").text
    assert "No finding matches" in client.get("/findings").text
    assert client.get("/api/endpoints").json() == {"since": None, "until": None, "items": []}
    assert client.get("/api/services").json() == [] and client.get("/api/findings").json()["items"] == []
    assert client.get("/reports/weekly").status_code == 200


# ----------------------------------------------------------------------------------------- security


class _ActiveMarkup(HTMLParser):
    """Collects markup a browser would act on: script elements, on* handlers, javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.found.append("<script>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if name in ("href", "src", "xlink:href", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"{tag} {name}={value}")


def _active_markup(html: str) -> list[str]:
    """Elements and attributes in ``html`` (SVG included) that would run script in a browser."""
    parser = _ActiveMarkup()
    parser.feed(html)
    return parser.found


def test_span_content_renders_inert_everywhere(evil):
    _, client, ids = evil
    trace_id = client.get(f"/api/findings/{ids['n1_id']}").json()["example"]["trace_id"]
    pages = [
        "/",
        "/findings",
        f"/findings/{ids['n1_id']}",
        f"/findings/{ids['slow_id']}",
        "/endpoints",
        f"/endpoints?route={ids['slow_route']}",
        f"/traces/{trace_id}",
        "/reports/weekly?week=2026-W47",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.text
        assert _active_markup(text) == [], url
        assert "&lt;script&gt;" in text, url  # the content is shown, escaped
    # The statement, the attribute value with a javascript: URL and the evidence URL stay text.
    finding_page = client.get(f"/findings/{ids['n1_id']}").text
    assert "<code>javascript:alert(3)</code>" in finding_page
    assert str(markupsafe.escape(EVIL)) in finding_page


def test_configured_link_bases_must_be_http(tmp_path):
    con = open_database(tmp_path / "x.duckdb")
    ids = populate(con, traces_per_route=2)
    settings = ServerSettings(jaeger_url="javascript:alert(1)//", grafana_url="data:text/html,x")
    text = TestClient(create_app(con, settings)).get(f"/findings/{ids['n1_id']}").text
    assert "open in Jaeger" not in text and "open in Grafana" not in text and "javascript:" not in text


def test_charts_hold_no_script_and_no_external_reference():
    points = [
        {"start": __import__("datetime").datetime(2026, 1, 1, h), **dict.fromkeys(
            ["p50_ms", "p95_ms", "p99_ms", "db_ms", "cache_ms", "http_ms", "template_ms", "self_ms"], h + 1.0)}
        for h in range(5)
    ]  # fmt: skip
    for svg in (
        charts.latency_chart(points, title=EVIL),
        charts.breakdown_chart(points, title=EVIL),
        charts.sparkline([1, None, 3, 2]),
    ):
        assert svg.startswith("<svg") and "<script" not in svg.lower() and "<!--" not in svg
        assert re.findall(r"https?://[^\s\"'<>]+", svg) == ["http://www.w3.org/2000/svg"] * svg.count(
            "xmlns="
        )
        assert "javascript:alert" not in svg or "&lt;script&gt;" in svg
    assert charts.sparkline([None, 1]) == ""


def test_token_protects_api_pages_and_static(tmp_path):
    con = open_database(tmp_path / "auth.duckdb")
    client = TestClient(create_app(con, ServerSettings(api_token="s3cret")))
    for url in ("/api/findings", "/api/status", "/openapi.json"):
        response = client.get(url)
        assert_error(response, 401, "Authorization: Bearer")
        assert response.headers["www-authenticate"] == "Bearer"
        assert_error(client.get(url, headers={"Authorization": "Bearer wrong"}), 401)
        assert client.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = client.get("/")
    assert page.status_code == 401 and "?token=" in page.text and "text/html" in page.headers["content-type"]
    assert client.get("/static/style.css").status_code == 401
    assert client.get("/?token=wrong", follow_redirects=False).status_code == 401
    login = client.get("/endpoints?token=s3cret&service=shop", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/endpoints?service=shop"
    assert (
        "httponly" in login.headers["set-cookie"].lower()
        and "samesite=strict" in login.headers["set-cookie"].lower()
    )
    assert client.get("/").status_code == 200  # the cookie now authenticates
    assert client.get("/api/findings").status_code == 200
    assert client.get("/static/style.css").status_code == 200
