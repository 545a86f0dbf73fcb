"""``slow_endpoint`` findings point at code: the most common location of the dominant part's spans
among the slow requests, and a self-time-dominated route with N+1s points at the lazy-loading loop."""

import analyzer_helpers
from analyzer_helpers import by_kind
from th_traces import BASE_NS, MS, TraceBuilder, store
from tracehound.analyzer import analyze

db = analyzer_helpers.db  # the fixture
MIN = 60_000 * MS


def test_db_dominated_slow_endpoint_points_at_most_common_db_location(db):
    traces = []
    for i in range(12):
        t = TraceBuilder(route="/report", duration_ms=1600, start_ns=BASE_NS + i * MIN)
        # 3 report queries (the dominant part) at report.py:31, one settings query elsewhere
        for q in range(3):
            t.db("SELECT * FROM sales WHERE region = %s", 10 + q * 500, 480, params_hash=f"r{i}.{q}",
                 code=("app/report.py", 31, "sales_report"))  # fmt: skip
        t.db("SELECT * FROM settings", 1500, 5, params_hash="s", code=("app/settings.py", 9, "load"))
        t.cache("get", "report:{n}", False, 1, 2, code=("app/cache.py", 5, "cached"))
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "slow_endpoint")
    assert (f["code_filepath"], f["code_lineno"], f["code_function"]) == ("app/report.py", 31, "sales_report")
    assert f["evidence"]["dominant"] == "db"


def test_http_dominated_slow_endpoint_uses_http_spans_not_db_location(db):
    traces = []
    for i in range(12):
        t = TraceBuilder(route="/quote", duration_ms=1500, start_ns=BASE_NS + i * MIN)
        t.db("SELECT * FROM carts WHERE id = %s", 1, 5, params_hash=f"c{i}", code=("app/cart.py", 3, "cart"))
        sid = t.http("GET", "https://rates.local/quote", 10, 1400)
        t.spans[-1]["SpanAttributes"].update(
            {"code.filepath": "app/shipping.py", "code.lineno": "44", "code.function": "quote"}
        )
        assert sid
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "slow_endpoint")
    assert f["evidence"]["dominant"] == "http"
    assert (f["code_filepath"], f["code_lineno"]) == ("app/shipping.py", 44)


def _lazy_loop_page(i, route="/authors", lazy=True):
    """1.2 s request: 10 fast lazy loads of Author.books with ~100 ms of ORM work between them."""
    t = TraceBuilder(route=route, duration_ms=1200, start_ns=BASE_NS + i * MIN)
    t.db("SELECT authors.id FROM authors", 1, 3, params_hash="all", code=("app/pages.py", 70, "authors"))
    for a in range(10):
        t.db(
            "SELECT books.id FROM books WHERE %(param_1)s = books.author_id",
            10 + a * 110,
            8,
            params_hash=f"a{a}" if lazy else "same",
            relationship="Author.books" if lazy else None,
            uselist=True,
            code=("app/pages.py", 76, "authors"),
        )
    return t


def test_self_time_dominated_route_with_n_plus_one_points_at_the_lazy_loading_loop(db):
    store(db, *[_lazy_loop_page(i) for i in range(12)])
    found = analyze(db)
    [n1] = by_kind(found, "n_plus_one_query")
    [f] = by_kind(found, "slow_endpoint")
    assert f["evidence"]["dominant"] == "self"
    assert (f["code_filepath"], f["code_lineno"]) == ("app/pages.py", 76)
    hint = f["fix_hint"]
    assert "lazy" in hint and "between the queries" in hint
    assert "Author.books" in hint and "app/pages.py:76" in hint
    assert [r["id"] for r in f["evidence"]["related_n_plus_one"]] == [n1["id"]]


def test_self_time_dominated_route_without_n_plus_one_says_profile(db):
    traces = []
    for i in range(12):
        t = TraceBuilder(route="/crunch", duration_ms=1200, start_ns=BASE_NS + i * MIN)
        t.db("SELECT * FROM numbers", 1, 5, params_hash="n", code=("app/crunch.py", 12, "crunch"))
        traces.append(t)
    store(db, *traces)
    [f] = by_kind(analyze(db), "slow_endpoint")
    assert f["evidence"]["dominant"] == "self"
    assert "Profile" in f["fix_hint"] and "N+1" not in f["fix_hint"]
    assert (f["code_filepath"], f["code_lineno"]) == ("app/crunch.py", 12)  # the handler's only span


def test_worker_windowed_rerun_keeps_the_n_plus_one_pointer(db):
    """The worker's windowed re-run has no fresh N+1 occurrences: it reads the stored N+1 finding."""
    from tracehound.analyzer.config import AnalyzerConfig
    from tracehound.analyzer.detectors import WINDOWED
    from tracehound.analyzer.engine import run_pass
    from tracehound.analyzer.spans import select_traces

    store(db, *[_lazy_loop_page(i) for i in range(12)])
    [n1] = by_kind(analyze(db), "n_plus_one_query")
    cur = db.cursor()
    select_traces(cur, None, None)
    run_pass(cur, AnalyzerConfig.from_dict(None), sorted(WINDOWED), summaries=False)
    row = db.execute(
        "SELECT code_filepath, code_lineno, fix_hint, evidence FROM findings WHERE kind = 'slow_endpoint'"
    ).fetchall()
    [(path, line, hint, evidence)] = row
    assert (path, line) == ("app/pages.py", 76) and "Author.books" in hint
    assert n1["id"] in evidence
