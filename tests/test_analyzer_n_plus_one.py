"""n_plus_one_query / repeated_query / n_plus_one_cache / n_plus_one_http on hand-built traces."""

import analyzer_helpers
import pytest
from analyzer_helpers import by_kind
from th_traces import BASE_NS, MS, TraceBuilder, n_plus_one_trace, store
from tracehound.analyzer import analyze

db = analyzer_helpers.db  # the fixture
analyzer_path = analyzer_helpers.analyzer_path  # every test runs on the kernel and the SQL path
pytestmark = pytest.mark.usefixtures("analyzer_path")

AUTHOR_Q = "SELECT authors.id, authors.name FROM authors WHERE authors.id = ?"


def test_classic_n_plus_one_names_source_relationship_and_fix(db):
    t = n_plus_one_trace(n=10, each_ms=8, relationship="Book.author", uselist=False)
    store(db, t)
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["endpoint"] == "/books" and f["occurrences"] == 1
    ev = f["evidence"]
    assert ev["statement"] == AUTHOR_Q
    assert ev["source_statement"].startswith("SELECT books.id")
    assert ev["queries_per_request_max"] == 10
    assert f["impact_ms"] == 72.0  # 10 x 8 ms minus one batched query (the slowest repeat, 8 ms)
    assert "joinedload(Book.author)" in f["fix_hint"]
    assert f["code_filepath"] == "app/templates/books.html" and f["code_lineno"] == 12
    assert f["example_trace_ids"] == [t.trace_id]
    occ = db.execute(
        "SELECT span_count, span_ids FROM finding_occurrences WHERE finding_id = ?", [f["id"]]
    ).fetchall()
    assert occ[0][0] == 10 and len(occ[0][1]) == 10


def test_collection_relationship_suggests_selectinload(db):
    store(db, n_plus_one_trace(relationship="Author.books", uselist=True))
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert "selectinload(Author.books)" in f["fix_hint"]


def test_repeats_with_other_spans_between(db):
    store(db, n_plus_one_trace(n=6, each_ms=10, between=True))
    assert len(by_kind(analyze(db), "n_plus_one_query")) == 1


def test_parallel_overlapping_repeats(db):
    t = TraceBuilder(duration_ms=120)
    for i in range(8):  # all start within 2 ms, each 60 ms: overlapping
        t.db("SELECT * FROM items WHERE id = %s", 5 + i * 0.25, 60, params_hash=f"h{i}")
    store(db, t)
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["evidence"]["queries_per_request_max"] == 8


def test_nested_loop_inside_loop(db):
    """for author in authors: (span per author) for book in author.books: book.reviews."""
    t = TraceBuilder(duration_ms=400)
    at = 1.0
    for a in range(4):
        it = t.span("render_author", at, 60)
        t.db("SELECT * FROM books WHERE author_id = %s", at + 1, 3, parent=it, params_hash=f"a{a}")
        for b in range(5):
            t.db(
                "SELECT * FROM reviews WHERE book_id = %s",
                at + 5 + b * 5,
                4,
                parent=it,
                params_hash=f"b{a}{b}",
            )
        at += 70
    store(db, t)
    found = {f["evidence"]["statement"]: f for f in by_kind(analyze(db), "n_plus_one_query")}
    # inner loop: 20 review queries; outer loop: 4 book queries is below 5 -> only the inner one
    assert set(found) == {"SELECT * FROM reviews WHERE book_id = ?"}
    assert found["SELECT * FROM reviews WHERE book_id = ?"]["evidence"]["queries_per_request_max"] == 20


def test_raw_sql_literals_without_params_hash(db):
    t = TraceBuilder(duration_ms=200)
    for i in range(7):
        t.db(f"SELECT * FROM users WHERE id = {i + 1} AND state = 'active'", 2 + 12 * i, 11)
    store(db, t)
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["evidence"]["statement"] == "SELECT * FROM users WHERE id = ? AND state = ?"


def test_db_query_text_spelling(db):
    store(db, n_plus_one_trace(spelling="db.query.text"))
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["evidence"]["statement"] == AUTHOR_Q


def test_no_params_hash_assumes_distinct(db):
    store(db, n_plus_one_trace(params=False))
    assert len(by_kind(analyze(db), "n_plus_one_query")) == 1


def test_selectinload_batches_are_not_flagged(db):
    t = TraceBuilder(duration_ms=200)
    t.db("SELECT * FROM books LIMIT %(l)s", 1, 5, params_hash="l")
    for i in range(6):  # chunked selectin: IN lists of several params
        t.db(
            "SELECT * FROM reviews WHERE reviews.book_id IN (%(p_1)s, %(p_2)s, %(p_3)s)",
            10 + i * 20,
            18,
            params_hash=f"c{i}",
        )
    store(db, t)
    assert by_kind(analyze(db), "n_plus_one_query") == []


def test_loop_of_different_statements_is_not_flagged(db):
    t = TraceBuilder(duration_ms=300)
    for i, table in enumerate(["a", "b", "c", "d", "e", "f", "g"]):
        t.db(f"SELECT * FROM {table} WHERE id = %s", 1 + 30 * i, 25, params_hash=f"x{i}")
    store(db, t)
    assert by_kind(analyze(db), "n_plus_one_query") == []


def test_fewer_repeats_than_threshold_is_not_flagged(db):
    store(db, n_plus_one_trace(n=4, each_ms=30))
    assert by_kind(analyze(db), "n_plus_one_query") == []


def test_fast_run_flagged_low_only_when_count_is_high(db):
    fast_few = n_plus_one_trace(n=10, each_ms=1.0, route="/few")  # 10 ms total < 50 ms, 10 < 20
    fast_many = n_plus_one_trace(n=30, each_ms=1.0, route="/many")  # 30 ms total, 30 >= 20
    store(db, fast_few, fast_many)
    found = by_kind(analyze(db), "n_plus_one_query")
    assert [f["endpoint"] for f in found] == ["/many"]
    assert found[0]["severity"] == "low"


def test_same_params_repeated_is_repeated_query_not_n_plus_one(db):
    t = TraceBuilder(duration_ms=200)
    for i in range(6):
        t.db("SELECT * FROM settings WHERE key = %s", 1 + i * 20, 15, params_hash="same")
    store(db, t)
    found = analyze(db)
    assert by_kind(found, "n_plus_one_query") == []
    [r] = by_kind(found, "repeated_query")
    assert r["evidence"]["runs_per_request_max"] == 6 and r["impact_ms"] == 75.0


def test_repeated_query_not_flagged_for_distinct_params(db):
    store(db, n_plus_one_trace(n=3))
    assert by_kind(analyze(db), "repeated_query") == []


def test_redis_spans_are_cache_not_db(db):
    t = TraceBuilder(duration_ms=200)
    for i in range(8):
        t.db(f"GET book:{i}", 1 + i * 20, 15, system="redis")
    store(db, t)
    found = analyze(db)
    assert by_kind(found, "n_plus_one_query") == []
    [c] = by_kind(found, "n_plus_one_cache")
    assert c["evidence"]["operation"] == "GET book:{n}"


def test_n_plus_one_cache_and_get_many_negative(db):
    loop = TraceBuilder(route="/loop", duration_ms=100)
    for i in range(6):
        loop.cache("get", "book:{n}", True, 1 + i * 3, 2)
    batched = TraceBuilder(route="/batched", duration_ms=100)
    batched.cache("get_many", "book:{n}", True, 1, 3)
    store(db, loop, batched)
    found = by_kind(analyze(db), "n_plus_one_cache")
    assert [f["endpoint"] for f in found] == ["/loop"]
    assert "get_many" in found[0]["fix_hint"]


def test_n_plus_one_http_with_url_placeholders_and_old_attribute_names(db):
    t = TraceBuilder(route="/dashboard", duration_ms=900)
    for i in range(6):
        t.http(
            "GET",
            f"http://users.internal/api/users/{100 + i}?expand=1",
            1 + i * 110,
            100,
            old_names=i % 2 == 0,
        )
    few = TraceBuilder(route="/few", duration_ms=900)
    for i in range(4):
        few.http("GET", f"http://users.internal/api/users/{i}", 1 + i * 210, 200)
    store(db, t, few)
    [f] = by_kind(analyze(db), "n_plus_one_http")
    assert f["endpoint"] == "/dashboard" and f["evidence"]["url"] == "GET users.internal/api/users/{n}"
    assert f["impact_ms"] == 500.0


def test_same_problem_in_many_traces_is_one_finding_with_stable_id(db):
    traces = [n_plus_one_trace(start_ns=BASE_NS + i * 60_000 * MS) for i in range(5)]
    store(db, *traces)
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["occurrences"] == 5 and f["impact_ms"] == 5 * 72.0
    # most recent 3 first, then the worst
    assert f["example_trace_ids"][:3] == [t.trace_id for t in reversed(traces)][:3]
    again = by_kind(analyze(db), "n_plus_one_query")
    assert [g["id"] for g in again] == [f["id"]] and again[0]["occurrences"] == 5
    assert db.execute("SELECT count(*) FROM finding_occurrences").fetchone()[0] == 5


def test_placeholder_statement_with_constant_literal_is_an_n_plus_one(db):
    """PARITY_NOTES #1: `= %s LIMIT 21` without params hash: bound parameters unknown -> distinct."""
    t = TraceBuilder(duration_ms=200)
    t.db("SELECT books.id FROM books", 1, 5)
    for i in range(10):
        t.db("SELECT a.id, a.name FROM a WHERE a.id = %s LIMIT 21", 10 + i * 10, 8)
    store(db, t)
    found = analyze(db)
    [f] = by_kind(found, "n_plus_one_query")
    assert f["evidence"]["statement"] == "SELECT a.id, a.name FROM a WHERE a.id = ? LIMIT ?"
    assert not by_kind(found, "repeated_query")


def test_non_sql_db_span_names_are_not_n_plus_one(db):
    """PARITY_NOTES #2: 'pg-pool.connect' has no space: not a query text (Sentry's rule)."""
    t = TraceBuilder(duration_ms=300)
    for i in range(10):
        t.db("pg-pool.connect", 1 + i * 20, 15)
    store(db, t)
    assert not by_kind(analyze(db), "n_plus_one_query")
