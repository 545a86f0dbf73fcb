"""Fixes from the analyzer review (issue 4 follow-up): impact, CLI errors, windows, hints, noise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import analyzer_helpers
from analyzer_helpers import by_kind
from th_traces import BASE_NS, MS, TraceBuilder, n_plus_one_trace, store
from tracehound.analyzer import analyze

db = analyzer_helpers.db  # the fixture
MIN = 60_000 * MS


def _env():
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _run(*args, cwd=None, timeout=120):
    return subprocess.run(
        ["tracehound", *args], capture_output=True, text=True, env=_env(), cwd=cwd, timeout=timeout
    )


def test_slow_query_always_slow_counts_time_above_absolute_threshold(db):
    traces = []
    for i in range(10):
        t = TraceBuilder(route="/report", duration_ms=5100, start_ns=BASE_NS + i * MIN)
        t.db("SELECT * FROM sales WHERE region = %s", 10, 5000, params_hash=f"r{i}")
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "slow_query")
    assert f["occurrences"] == 10
    assert f["impact_ms"] == 10 * 4000.0  # each execution 4 s above the 1000 ms threshold


def test_slow_query_threshold_override_changes_impact(db):
    t = TraceBuilder(route="/report", duration_ms=3000)
    t.db("SELECT * FROM sales", 10, 2500)
    store(db, t)
    config = {"overrides": [{"route": "/report", "detector": "slow_query", "min_duration_ms": 2000}]}
    [f] = by_kind(analyze(db, config=config), "slow_query")
    assert f["impact_ms"] == 500.0


def test_serve_with_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[detectors.n_plus_one]\nmin_count = 3\n")
    out = _run(
        "serve",
        "--db",
        str(tmp_path / "th.duckdb"),
        "--config",
        str(bad),
        "--port",
        "0",
        "--otlp-http-port",
        "0",
        "--otlp-grpc-port",
        "0",
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "unknown detector 'n_plus_one'" in out.stderr and str(bad) in out.stderr


def _windowed_store():
    """20 requests to a slow route, one a minute, every kind of windowed finding plus an N+1."""
    traces = []
    for i in range(40):
        t = TraceBuilder(route="/slow", duration_ms=1500, start_ns=BASE_NS + i * MIN)
        t.connect(1, 8)
        t.cache("get", "book:{n}", i % 5 == 0, 10, 1)
        t.http("GET", "https://inventory.local/stock", 20, 900 if i % 10 == 3 else 10)
        t.db("SELECT * FROM big WHERE x = %s", 1000, 1200, params_hash=f"b{i}")
        traces.append(t)
        traces.append(n_plus_one_trace(start_ns=BASE_NS + i * MIN + 30_000 * MS))
    return traces


def _snapshot(con):
    rows = con.execute("SELECT * EXCLUDE (updated_at) FROM findings ORDER BY id").fetchall()
    occ = con.execute(
        "SELECT finding_id, count(*), sum(impact_ms) FROM finding_occurrences GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    return rows, occ


def test_short_window_reanalysis_leaves_stored_findings_unchanged(db):
    store(db, *_windowed_store())
    everything = analyze(db)
    kinds = {f["kind"] for f in everything}
    assert {"slow_endpoint", "slow_span", "cache_miss_ratio", "connection_churn", "slow_query"} <= kinds
    assert "n_plus_one_query" in kinds
    before = _snapshot(db)
    # 3 minutes: 3 requests to /slow, far below every windowed detector's volume threshold
    window = analyze(db, since=BASE_NS + 10 * MIN, until=BASE_NS + 13 * MIN)
    assert _snapshot(db) == before
    # the returned findings are scoped to the window, totals kept apart
    [n1] = by_kind(window, "n_plus_one_query")
    assert n1["occurrences"] == 3 and n1["total_occurrences"] == 40
    [sq] = by_kind(window, "slow_query")
    assert sq["occurrences"] == 3 and sq["impact_ms"] == 3 * 200.0 and sq["total_impact_ms"] == 40 * 200.0
    assert not by_kind(window, "slow_endpoint")  # not evaluated in this window: nothing to report


def test_cli_until_is_honoured_and_counts_are_window_scoped(tmp_path):
    from tracehound.collector.store import open_database

    path = tmp_path / "th.duckdb"
    con = open_database(path)
    store(con, *[n_plus_one_trace(start_ns=BASE_NS + i * 24 * 60 * MIN) for i in range(4)])
    con.close()
    out = _run("analyze", "--db", str(path), "--json", "--until", "2024-05-08", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [f] = json.loads(out.stdout)
    assert f["occurrences"] == 2 and f["total_occurrences"] == 2  # only 05-06 and 05-07 analysed
    assert f["last_seen"].startswith("2024-05-07")
    everything = _run("analyze", "--db", str(path), "--json", cwd=tmp_path)
    [f] = json.loads(everything.stdout)
    assert f["occurrences"] == 4
    table = _run("analyze", "--db", str(path), "--since", "2024-05-09", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert "OCCURRENCES" in header
    cells = row.split()
    assert cells[cells.index("n_plus_one_query") + 4] == "1/4"  # in window / all time


def _authors_page(start_ns=BASE_NS, authors=6, books=3):
    """The demo's /authors: authors query, per author lazy Author.books, per book lazy Book.reviews."""
    t = TraceBuilder(route="/authors", duration_ms=500, start_ns=start_ns)
    t.db(
        "SELECT authors.id, authors.name FROM authors",
        1,
        3,
        params_hash="all",
        code=("pages.py", 70, "authors"),
    )
    at = 5.0
    for a in range(authors):
        t.db(
            "SELECT books.id, books.author_id FROM books WHERE %(param_1)s = books.author_id",
            at,
            10,
            params_hash=f"a{a}",
            relationship="Author.books",
            uselist=True,
            code=("pages.py", 76, "authors"),
        )
        at += 11
        for b in range(books):
            t.db(
                "SELECT reviews.id, reviews.stars FROM reviews WHERE %(param_1)s = reviews.book_id",
                at,
                10,
                params_hash=f"b{a}.{b}",
                relationship="Book.reviews",
                uselist=True,
                code=("pages.py", 78, "authors"),
            )
            at += 11
    return t


def test_nested_n_plus_one_suggests_chained_loader_on_outer_query(db):
    store(db, _authors_page())
    found = {f["evidence"]["relationship"]: f for f in by_kind(analyze(db), "n_plus_one_query")}
    assert set(found) == {"Author.books", "Book.reviews"}
    inner = found["Book.reviews"]
    assert inner["evidence"]["nested_in"] == "Author.books"
    hint = inner["fix_hint"]
    assert "selectinload(Author.books).selectinload(Book.reviews)" in hint
    assert "the loop at pages.py:78" in hint and "parent rows at pages.py:78" not in hint
    outer = found["Author.books"]  # the outer loop: a plain one-level N+1
    assert "nested_in" not in outer["evidence"]
    assert "selectinload(Author.books)" in outer["fix_hint"] and ".selectinload(Book" not in outer["fix_hint"]


def test_nested_n_plus_one_detected_when_outer_loop_is_short(db):
    """2 authors (outer loop below 5 repeats) x 4 books: the source query is still a lazy load."""
    store(db, _authors_page(authors=2, books=4))
    [inner] = by_kind(analyze(db), "n_plus_one_query")
    assert inner["evidence"]["relationship"] == "Book.reviews"
    assert "selectinload(Author.books).selectinload(Book.reviews)" in inner["fix_hint"]


def _span_outliers(route, outliers, start_ns=BASE_NS):
    traces = []
    for i in range(40):
        t = TraceBuilder(route=route, duration_ms=400, start_ns=start_ns + i * MIN)
        slow = i < outliers
        t.db("SELECT * FROM books WHERE books.id = %s", 1, 272 if slow else 0.85, params_hash=f"k{i}")
        traces.append(t)
    return traces


def test_slow_span_single_outliers_are_noise(db):
    store(db, *_span_outliers("/once", 1), *_span_outliers("/twice", 2, start_ns=BASE_NS + 50 * MIN))
    assert by_kind(analyze(db), "slow_span") == []
    store(db, *_span_outliers("/thrice", 3, start_ns=BASE_NS + 100 * MIN))
    [f] = by_kind(analyze(db), "slow_span")
    assert f["endpoint"] == "/thrice" and f["occurrences"] == 3
    config = {"detectors": {"slow_span": {"min_occurrences": 1}}}
    assert {f["endpoint"] for f in by_kind(analyze(db, config=config), "slow_span")} == {
        "/once",
        "/twice",
        "/thrice",
    }


def test_config_falls_back_to_tomli_without_tomllib(tmp_path):
    """Python 3.10 has no tomllib: the config loader must use tomli (in a fresh interpreter)."""
    import pytest

    pytest.importorskip("tomli")
    p = tmp_path / "tracehound.toml"
    p.write_text("[detectors.slow_query]\nmin_duration_ms = 250\n")
    code = (
        "import sys; sys.modules['tomllib'] = None\n"  # import tomllib now raises ModuleNotFoundError
        "from tracehound.analyzer.config import AnalyzerConfig, tomllib\n"
        f"assert tomllib.__name__ == 'tomli', tomllib\n"
        f"print(AnalyzerConfig.load({str(p)!r}).get('slow_query')['min_duration_ms'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == 250.0


def test_cache_set_loop_hint_says_set_many(db):
    t = TraceBuilder(route="/warm", duration_ms=200)
    for i in range(8):
        t.cache("set", "book:{n}", None, 1 + i * 3, 2)
    store(db, t)
    [f] = by_kind(analyze(db), "n_plus_one_cache")
    assert "set_many" in f["fix_hint"] and "get_many" not in f["fix_hint"] and "Fetch" not in f["fix_hint"]


def test_slow_endpoint_title_pluralises(db):
    traces = []
    for i in range(12):
        t = TraceBuilder(route="/one", duration_ms=1500, start_ns=BASE_NS + i * MIN)
        t.db("SELECT pg_sleep(1.4)", 10, 1400)
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "slow_endpoint")
    assert "in 1 DB query" in f["title"] and "1 DB queries" not in f["title"]


def test_code_location_is_the_most_common_and_worst_example_is_kept(db):
    traces = []
    for i in range(6):
        where = ("app/a.py", 10, "a") if i < 4 else ("app/b.py", 20, "b")
        t = TraceBuilder(route="/mix", duration_ms=900, start_ns=BASE_NS + i * MIN)
        each = 60 if i == 0 else 10  # the oldest trace is by far the worst
        for q in range(6):
            t.db("SELECT * FROM t WHERE id = %s", 1 + q * (each + 1), each, params_hash=f"q{q}", code=where)
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert (f["code_filepath"], f["code_lineno"]) == ("app/a.py", 10)
    assert f["example_trace_ids"][:3] == [t.trace_id for t in traces[::-1][:3]]  # most recent first
    assert traces[0].trace_id in f["example_trace_ids"]  # plus the worst, although the oldest


def test_repeated_query_at_exactly_two_runs_and_override(db):
    t = TraceBuilder(route="/twice", duration_ms=100)
    t.db("SELECT * FROM settings WHERE id = %s", 1, 5, params_hash="same")
    t.db("SELECT * FROM settings WHERE id = %s", 10, 5, params_hash="same")
    store(db, t)
    [f] = by_kind(analyze(db), "repeated_query")
    assert f["evidence"] and f["occurrences"] == 1
    config = {"detectors": {"repeated_query": {"min_count": 3}}}
    assert by_kind(analyze(db, config=config), "repeated_query") == []


def test_cache_miss_ratio_not_flagged_at_low_volume(db):
    traces = []
    for i in range(19):  # 19 lookups, all misses: below min_lookups (20)
        t = TraceBuilder(route="/rare", duration_ms=30, start_ns=BASE_NS + i * MIN)
        t.cache("get", "rare:{n}", False, 1, 1)
        traces.append(t)
    store(db, *traces)
    assert by_kind(analyze(db), "cache_miss_ratio") == []
    t = TraceBuilder(route="/rare", duration_ms=30, start_ns=BASE_NS + 30 * MIN)
    t.cache("get", "rare:{n}", False, 1, 1)
    store(db, t)
    assert len(by_kind(analyze(db), "cache_miss_ratio")) == 1  # the 20th lookup makes it a finding


def test_finding_id_survives_closing_and_reopening_the_db(tmp_path):
    from tracehound.collector.store import open_database

    path = tmp_path / "th.duckdb"
    con = open_database(path)
    store(con, n_plus_one_trace())
    [first] = by_kind(analyze(con), "n_plus_one_query")
    con.close()
    con = open_database(path)
    store(con, n_plus_one_trace(start_ns=BASE_NS + 5 * MIN))
    [again] = by_kind(analyze(con), "n_plus_one_query")
    con.close()
    assert again["id"] == first["id"] and again["fingerprint"] == first["fingerprint"]
    assert again["occurrences"] == 2


def test_consecutive_http_stays_one_finding_when_one_call_dips_under_threshold(db):
    def trace(durations, start_ns):
        t = TraceBuilder(route="/sync", duration_ms=6000, start_ns=start_ns)
        at = 10.0
        for path, d in durations:
            t.http("GET", f"https://api.partner.io/v1/{path}/42", at, d)
            at += d + 10
        return t

    slow = [("users", 1200), ("orders", 1200), ("stock", 1200), ("prices", 1200)]
    dipped = [("users", 1200), ("orders", 1200), ("stock", 300), ("prices", 1200)]
    store(db, trace(slow, BASE_NS), trace(dipped, BASE_NS + MIN))
    [f] = by_kind(analyze(db), "consecutive_http")
    assert f["occurrences"] == 2 and f["impact_ms"] == 3600.0 + 2400.0
    assert "api.partner.io" in f["title"] or "api.partner.io" in json.dumps(f["evidence"])


def test_n_plus_one_evidence_has_loop_wall_time(db):
    store(db, n_plus_one_trace(n=10, each_ms=8.0, gap_ms=3.0))  # repeats at 10, 21, ..., 109 (+8)
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["evidence"]["loop_wall_ms"] == 107.0 and f["evidence"]["repeated_ms_avg"] == 80.0
