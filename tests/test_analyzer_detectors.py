"""consecutive_http, slow_query, slow_endpoint, slow_span, cache_miss_ratio, connection_churn, summaries."""

import analyzer_helpers
import pytest
from analyzer_helpers import by_kind
from th_traces import BASE_NS, MS, TraceBuilder, store
from tracehound.analyzer import analyze

db = analyzer_helpers.db  # the fixture
analyzer_path = analyzer_helpers.analyzer_path  # every test runs on the kernel and the SQL path
pytestmark = pytest.mark.usefixtures("analyzer_path")
MIN = 60_000 * MS


def _http_run(durations, gaps, route="/sync", start_ns=BASE_NS):
    t = TraceBuilder(route=route, duration_ms=sum(durations) + sum(gaps) + 100, start_ns=start_ns)
    at = 10.0
    for i, d in enumerate(durations):
        t.http("GET", f"https://api.partner.io/v1/thing{i}", at, d)
        at += d + (gaps[i] if i < len(gaps) else 0)
    return t


def test_consecutive_http_positive_and_sentry_negatives(db):
    store(
        db,
        _http_run([2000, 2000, 2000], [10, 10], route="/basic"),  # saves 4000 ms
        _http_run([1000, 1000, 1000], [10, 10], route="/exact"),  # saves exactly 2000 ms
        _http_run([900, 900, 900, 400, 400, 400], [5] * 5, route="/short"),  # 3 eligible, saves 1800
        _http_run([2000, 2000], [10], route="/two"),  # only 2 calls
        _http_run([2000, 2000, 2000], [10_000, 10_000], route="/gaps"),  # gaps >= 500 ms
    )
    found = {f["endpoint"]: f for f in by_kind(analyze(db), "consecutive_http")}
    assert set(found) == {"/basic", "/exact"}
    assert found["/basic"]["impact_ms"] == 4000.0 and found["/exact"]["impact_ms"] == 2000.0


def test_consecutive_http_overlapping_calls_are_not_consecutive(db):
    t = TraceBuilder(route="/par", duration_ms=2500)
    for i in range(4):
        t.http("GET", f"https://api.partner.io/x/{i}", 10 + i * 5, 2000)
    store(db, t)
    assert by_kind(analyze(db), "consecutive_http") == []


def test_consecutive_http_tied_locations_give_the_first_called_one(db):
    """The pattern (part of the finding's id) names the most common location of the run; on a tie,
    the one called first, whatever Python's string hashing (it used to depend on it)."""
    t = TraceBuilder(route="/tie", duration_ms=9000)
    for i, (path, line) in enumerate([("app/b.py", 9), ("app/a.py", 3), ("app/a.py", 3), ("app/b.py", 9)]):
        attrs = {"http.request.method": "GET", "url.full": f"https://api.partner.io/v1/t{i}"}
        attrs.update({"code.filepath": path, "code.lineno": str(line), "code.function": "call"})
        t.span("GET", 10 + i * 2010, 2000, None, "Client", attrs)
    store(db, t)
    (found,) = by_kind(analyze(db), "consecutive_http")
    assert found["fingerprint"] and found["title"]
    pattern = db.execute(
        "SELECT pattern FROM finding_patterns WHERE finding_id = ?", [found["id"]]
    ).fetchall()[0][0]
    assert pattern.startswith("app/b.py:9 -> "), pattern


def test_slow_query_absolute_threshold_select_only(db):
    t = TraceBuilder(route="/report", duration_ms=5000)
    t.db("SELECT pokemon FROM pokedex", 1, 3185)
    t.db("SELECT * FROM pokedex WHERE name = 'pikachu'", 3200, 531)
    t.db("DELETE FROM pokedex WHERE id = 5", 3800, 1200)
    store(db, t)
    [f] = by_kind(analyze(db), "slow_query")
    assert f["evidence"]["statement"] == "SELECT pokemon FROM pokedex"
    assert f["title"].startswith("Slow query (3185 ms max)")


def test_slow_query_p95_regression_against_own_baseline(db):
    traces = []
    for day, dur in ((0, 20), (1, 20), (2, 20), (3, 95)):  # last day: p95 95 ms vs 20 ms
        for i in range(25):
            t = TraceBuilder(route="/q", duration_ms=150, start_ns=BASE_NS + day * 24 * 60 * MIN + i * MIN)
            t.db("SELECT * FROM orders WHERE customer_id = %s", 1, dur, params_hash=str(i))
            traces.append(t)
    store(db, *traces)
    found = by_kind(analyze(db), "slow_query")
    [reg] = [f for f in found if f["evidence"].get("rule") == "p95_regression"]
    assert reg["evidence"]["p95_baseline_ms"] == 20.0 and reg["evidence"]["p95_recent_ms"] == 95.0
    assert reg["occurrences"] == 25


def test_slow_endpoint_split_names_dominant_part(db):
    traces = []
    for i in range(20):
        slow = i >= 10
        t = TraceBuilder(route="/books", duration_ms=1500 if slow else 100, start_ns=BASE_NS + i * MIN)
        for q in range(31 if slow else 3):
            t.db(
                "SELECT * FROM books WHERE id = %s",
                1 + q * 40 if slow else 1 + q * 5,
                39 if slow else 4,
                params_hash=str(q),
            )
        traces.append(t)
    fast = [TraceBuilder(route="/fast", duration_ms=50, start_ns=BASE_NS + i * MIN) for i in range(20)]
    store(db, *traces, *fast)
    [f] = by_kind(analyze(db), "slow_endpoint")
    assert f["endpoint"] == "/books" and f["occurrences"] == 10
    ev = f["evidence"]
    assert ev["requests"] == 20 and ev["dominant"] == "db" and ev["p95_split_pct"]["db"] > 75
    assert "in 31 DB queries" in f["title"]
    summary = db.execute(
        "SELECT db_count, db_ns, self_ns, duration_ns FROM trace_summaries WHERE trace_id = ?",
        [traces[-1].trace_id],
    ).fetchall()[0]
    assert summary == (31, 31 * 39 * MS, (1500 - 31 * 39) * MS, 1500 * MS)


def test_summary_counts_overlapping_children_once(db):
    t = TraceBuilder(route="/par", duration_ms=150)
    t.db("SELECT 1", 0, 100)
    t.db("SELECT 2", 50, 100)  # overlaps the first; union covers 0-150
    store(db, t)
    analyze(db)
    db_ns, self_ns = db.execute("SELECT db_ns, self_ns FROM trace_summaries").fetchall()[0]
    assert self_ns == 0 and db_ns == 200 * MS  # each query's own time; the handler waited the whole time


def test_slow_span_outlier_against_operation_baseline(db):
    traces = []
    for i in range(40):
        t = TraceBuilder(route="/items", duration_ms=400, start_ns=BASE_NS + i * MIN)
        t.http("GET", "https://inventory.local/stock", 1, 300 if i >= 37 else 10)
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "slow_span")
    assert f["occurrences"] == 3 and set(f["example_trace_ids"]) == {t.trace_id for t in traces[37:]}
    assert f["evidence"]["baseline_median_ms"] == 10.0


def test_cache_miss_ratio_with_recompute_time(db):
    traces = []
    for i in range(30):
        t = TraceBuilder(route="/book/<int:id>", duration_ms=100, start_ns=BASE_NS + i * MIN)
        hit = i % 5 == 0  # 20% hits
        t.cache("get", "book:{n}", hit, 1, 1)
        if not hit:
            t.db("SELECT * FROM books WHERE id = %s", 3, 20, params_hash=str(i))
            t.cache("set", "book:{n}", None, 42, 1)
        traces.append(t)
    good = []
    for i in range(30):
        t = TraceBuilder(route="/author/<int:id>", duration_ms=20, start_ns=BASE_NS + i * MIN)
        t.cache("get", "author:{n}", i != 0, 1, 1)
        good.append(t)
    store(db, *traces, *good)
    [f] = by_kind(analyze(db), "cache_miss_ratio")
    ev = f["evidence"]
    assert f["endpoint"] == "/book/<int:id>" and ev["hit_ratio"] == 0.2 and ev["misses"] == 24
    assert ev["recompute_ms_per_miss"] == 40.0 and ev["misses_per_request"] == 0.8


def test_connection_churn(db):
    churn = []
    for i in range(12):
        t = TraceBuilder(route="/churn", duration_ms=50, start_ns=BASE_NS + i * MIN)
        t.connect(1, 8)
        t.db("SELECT 1", 10, 1)
        churn.append(t)
    pooled = []
    for i in range(12):  # every request checks a connection out of the pool; only the first opens one
        t = TraceBuilder(route="/pooled", duration_ms=50, start_ns=BASE_NS + i * MIN)
        t.connect(1, 8, new=i == 0)
        pooled.append(t)
    store(db, *churn, *pooled)
    [f] = by_kind(analyze(db), "connection_churn")
    assert f["endpoint"] == "/churn" and f["evidence"]["ratio"] == 1.0 and f["impact_ms"] == 96.0
    assert (f["code_filepath"], f["code_lineno"]) == ("app/db.py", 7)


def test_the_root_is_the_earliest_server_span_and_a_tie_goes_to_the_first_ingested(db):
    """A trace's route comes from its earliest SERVER span (a downstream service's server span
    starts later); two server spans starting together: the one ingested first."""
    from tracehound.analyzer.spans import select_traces

    nested = TraceBuilder(route="/front", duration_ms=300)
    nested.span("GET /inner", 10, 100, kind="Server", attrs={"http.route": "/inner"})
    tie = TraceBuilder(route="/first", duration_ms=300)
    tie.span("GET /second", 0, 300, parent="", kind="Server", attrs={"http.route": "/second"})
    store(db, nested, tie)
    cur = db.cursor()
    assert select_traces(cur) == 2
    rows = cur.execute("SELECT trace_id, endpoint, n_spans FROM th_traces").fetchall()
    assert sorted(rows) == sorted([(nested.trace_id, "/front", 2), (tie.trace_id, "/first", 2)])


def test_chunked_per_trace_phase_gives_the_same_findings(db, monkeypatch):
    """Traces split into rowid-range chunks (bounded memory) must not change any finding or summary."""
    import tracehound.analyzer.engine as engine
    from th_traces import n_plus_one_trace

    traces = [n_plus_one_trace(start_ns=BASE_NS + i * 60_000 * MS) for i in range(12)]
    for i in range(12):
        t = TraceBuilder(route="/slow", duration_ms=1500, start_ns=BASE_NS + i * MS)
        t.db("SELECT * FROM big WHERE x = %s", 10, 1200, params_hash=f"b{i}")
        traces.append(t)
    store(db, *traces)

    def snapshot():
        found = sorted((f["id"], f["occurrences"], round(f["impact_ms"], 3), f["title"]) for f in analyze(db))
        sums = db.execute("SELECT * FROM trace_summaries ORDER BY trace_id").fetchall()
        return found, sums

    whole = snapshot()
    monkeypatch.setattr(engine, "CHUNK_SPANS", 40)  # ~6 chunks
    chunks = []
    real_chunk = engine._chunk
    monkeypatch.setattr(engine, "_chunk", lambda cur, *a: chunks.append(a[-1]) or real_chunk(cur, *a))
    assert snapshot() == whole
    assert len(chunks) >= 4 and all(rid_range is not None for rid_range in chunks)
    assert {f[0] for f in whole[0]}  # something was found at all
