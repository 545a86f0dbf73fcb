"""The API's query cache (api/cache.py) on a real DuckDB file: a repeated request is answered from
memory, and every kind of write the analyzer makes (append, delete + re-insert of as many rows,
findings replaced or updated in place, occurrences deleted) is seen by the next request, whose
answer equals that of a fresh app with an empty cache."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from api_data import BASE, populate
from fastapi.testclient import TestClient
from tracehound.api.app import create_app
from tracehound.api.cache import QueryCache
from tracehound.collector.store import open_database

from tracehound.settings import ServerSettings

URLS = (
    "/api/reports/weekly?week=2026-W47",
    "/api/endpoints?trend=true",
    "/api/endpoints/series?route=/books",
    "/api/services",
)
PAGES = ("/", "/endpoints", "/endpoints?route=/books", "/reports/weekly?week=2026-W47")


@pytest.fixture
def shop(tmp_path):
    con = open_database(tmp_path / "th.duckdb")
    ids = populate(con, traces_per_route=12)
    app = create_app(con, ServerSettings())
    yield con, TestClient(app), app.state.query_cache, ids
    con.close()


def _answers(client) -> dict:
    out = {url: client.get(url).json() for url in URLS}
    for page in PAGES:
        response = client.get(page)
        assert response.status_code == 200, response.text
        out[page] = re.sub(r"chart-[0-9a-f-]{36}", "chart-ID", response.text)  # pygal's random ids
    return out


def _fresh(con) -> dict:
    """What an app with an empty cache answers on the same data."""
    return _answers(TestClient(create_app(con, ServerSettings())))


def test_repeated_requests_are_answered_from_the_cache(shop):
    con, client, cache, _ = shop
    first = _answers(client)
    misses, hits = cache.misses, cache.hits
    assert misses == len(URLS) + len(PAGES) and hits == 0
    assert _answers(client) == first
    assert cache.misses == misses and cache.hits >= hits + len(URLS) + len(PAGES)


def _summary_columns(con) -> str:
    return ", ".join(r[0] for r in con.execute("DESCRIBE trace_summaries").fetchall())


@pytest.mark.parametrize(
    "change",
    ["append_summary", "replace_summary", "update_finding", "replace_finding", "delete_occurrence"],
)
def test_every_write_of_the_analyzer_invalidates(shop, change):
    con, client, cache, ids = shop
    before = _answers(client)
    books = con.execute(
        "SELECT trace_id FROM trace_summaries WHERE endpoint = '/books' ORDER BY start LIMIT 1"
    ).fetchone()[0]
    if change == "append_summary":  # a new, very slow request
        con.execute(
            "INSERT INTO trace_summaries SELECT * REPLACE ('f' || trace_id[2:] AS trace_id, "
            "duration_ns * 50 AS duration_ns, start + INTERVAL 1 SECOND AS start) "
            "FROM trace_summaries WHERE trace_id = ?",
            [books],
        )
    elif change == "replace_summary":  # re-analysis: delete and re-insert, same row count
        cols = _summary_columns(con)
        row = con.execute(f"SELECT {cols} FROM trace_summaries WHERE trace_id = ?", [books]).fetchone()
        con.execute("DELETE FROM trace_summaries WHERE trace_id = ?", [books])
        con.execute("CHECKPOINT")
        row = list(row)
        row[6] *= 40  # duration_ns
        con.execute(f"INSERT INTO trace_summaries ({cols}) VALUES ({', '.join('?' * len(row))})", row)
    elif change == "update_finding":  # in place, updated_at untouched
        con.execute("UPDATE findings SET title = 'Renamed N+1' WHERE id = ?", [ids["n1_id"]])
    elif change == "replace_finding":
        con.execute(
            "UPDATE findings SET impact_ms = impact_ms * 1000, updated_at = updated_at + INTERVAL 1 SECOND "
            "WHERE id = ?",
            [ids["slow_id"]],
        )
    else:  # occurrences of the N+1 in the report's week go away
        con.execute(
            'DELETE FROM finding_occurrences WHERE finding_id = ? AND "timestamp" < ?',
            [ids["n1_id"], BASE + dt.timedelta(minutes=15)],
        )
    after = _answers(client)
    assert after == _fresh(con)
    assert after != before


def test_entries_expire_after_the_ttl_and_the_lru_is_bounded(shop):
    con, *_ = shop
    cur = con.cursor()
    calls = []

    def count(cur, n):
        calls.append(n)
        return cur.execute("SELECT count(*) FROM trace_summaries").fetchone()[0] + n

    expiring = QueryCache(ttl_seconds=0.0)
    assert expiring.get(cur, count, 1) == expiring.get(cur, count, 1) and calls == [1, 1]
    small = QueryCache(max_entries=2)
    for n in (1, 2, 3, 1):
        small.get(cur, count, n)
    assert calls == [1, 1, 1, 2, 3, 1]  # 1 was evicted by 3
