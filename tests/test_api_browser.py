"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real uvicorn server.

Opens the overview, a finding page, an endpoint page and a trace page; asserts what a user sees;
fails on any JavaScript console error, page error or request leaving the server. Screenshots go to
``test-artifacts/``. Without Chromium the test skips, except with ``CI=true`` where it fails.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from api_data import populate
from conftest import CI, free_port
from tracehound.api.app import create_app
from tracehound.collector.store import open_database

from tracehound.settings import ServerSettings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("TRACEHOUND_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    con = open_database(tmp_path_factory.mktemp("browser") / "th.duckdb")
    ids = populate(con)
    port = free_port()
    app = create_app(con, ServerSettings(port=port))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ids
    uv.should_exit = True
    thread.join(10)
    con.close()


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    base, _ = server
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on(
        "request",
        lambda r: (
            None if r.url.startswith(base) or r.url.startswith("data:") else problems.append(f"left: {r.url}")
        ),
    )
    pg.problems = problems
    yield pg
    context.close()
    assert problems == [], problems


def shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_overview_finding_and_trace_pages_in_chromium(page, server):
    base, ids = server
    page.goto(base + "/")
    assert page.title() == "Overview · tracehound"
    assert page.get_by_role("heading", name="Top findings by impact").is_visible()
    link = page.get_by_role("link", name="N+1 query: Book.author loaded one by one (10 queries per request)")
    assert link.is_visible()
    rows = page.locator("table.endpoints tbody tr")
    assert rows.count() == 3 and "/authors" in rows.first.inner_text()  # most server time first
    assert page.locator("td.spark svg").count() == 3 and page.locator("td.spark svg").first.is_visible()
    shot(page, "overview")

    link.click()
    page.wait_for_url(f"**/findings/{ids['n1_id']}")
    assert page.locator(".big-loc").inner_text() == "shop/views.py:57 in list_books"
    assert page.locator(".fix").inner_text().startswith("How to fix it")
    assert "selectinload(Book.author)" in page.locator(".fix").inner_text()
    assert "FROM authors WHERE authors.id" in page.locator("pre.statement").first.inner_text()
    highlighted = page.locator(".wf-row.hl")
    assert highlighted.count() == 10 and highlighted.first.locator(".wf-bar").is_visible()
    bg = highlighted.first.locator("summary").evaluate("e => getComputedStyle(e).backgroundColor")
    assert bg == "rgb(254, 243, 199)"  # highlighted rows are amber
    jaeger = page.get_by_role("link", name="open in Jaeger ↗")
    assert jaeger.get_attribute("href").startswith("http://localhost:16686/trace/")
    assert (
        page.get_by_role("link", name="open in Grafana ↗")
        .get_attribute("href")
        .startswith("http://localhost:3000/explore?schemaVersion=1&panes=")
    )
    # Expanding a highlighted span shows its code location and attributes.
    highlighted.first.locator("summary").click()
    detail = highlighted.first.locator(".wf-detail")
    assert detail.is_visible() and "shop/views.py:57 in list_books" in detail.inner_text()
    assert "tracehound.orm.lazy_load" in detail.inner_text()
    shot(page, "finding")

    page.get_by_role("link", name="full trace").click()
    page.wait_for_url("**/traces/*")
    assert page.locator("h1").inner_text() == "GET /books"
    assert page.locator(".wf-row").count() == 13
    first_sql = page.locator(".wf-row").nth(1)
    first_sql.locator("summary").click()
    assert "shop/views.py:42 in list_books" in first_sql.locator(".wf-detail").inner_text()
    shot(page, "trace")


def test_endpoint_page_charts_in_chromium(page, server):
    base, _ = server
    page.goto(base + "/endpoints")
    page.get_by_role("link", name="/books", exact=True).click()
    page.wait_for_url("**/endpoints?route=*")
    charts = page.locator("figure.chart svg")
    assert charts.count() == 2
    box = charts.first.bounding_box()
    assert box["width"] > 500 and box["height"] > 150
    assert "Where the time goes" in page.locator("figure.chart").nth(1).inner_text()
    shot(page, "endpoint")


def test_weekly_report_and_findings_form_in_chromium(page, server):
    base, ids = server
    page.goto(base + "/reports/weekly?week=2026-W47")
    assert page.title() == "Weekly report 2026-W47 · tracehound"
    assert page.locator("header.topbar nav a.active").inner_text() == "Weekly report"
    assert page.get_by_role("heading", name="tracehound weekly report 2026-W47").is_visible()
    assert (
        page.locator(".report figure svg").count() == 2
        and page.locator(".report figure svg").first.is_visible()
    )
    shot(page, "weekly")
    # Back to the UI through the nav bar, then the findings filter form with one field filled.
    page.locator("header.topbar").get_by_role("link", name="Findings").click()
    page.wait_for_url("**/findings")
    page.locator("select[name=kind]").select_option("n_plus_one_query")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/findings?*kind=n_plus_one_query*")
    rows = page.locator("table.findings tbody tr")
    assert rows.count() == 1 and "Book.author" in rows.first.inner_text()
    shot(page, "findings_filtered")
