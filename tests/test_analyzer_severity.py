"""One severity rule across every finding kind (issue 4 review): ``severity_for`` in
``analyzer/findings.py``, by average impact per affected request and total impact."""

import analyzer_helpers
import pytest
from analyzer_helpers import by_kind
from th_traces import BASE_NS, MS, TraceBuilder, n_plus_one_trace, store
from tracehound.analyzer import analyze

db = analyzer_helpers.db  # the fixture
MIN = 60_000 * MS


@pytest.mark.parametrize(
    ("impact_ms", "occurrences", "expected"),
    [
        (250.0, 1, "high"),  # 250 ms per request
        (249.9, 1, "medium"),
        (10_000.0, 1000, "high"),  # 10 ms per request, but 10 s in total
        (9_999.0, 1000, "medium"),  # 10 ms per request, < 10 s but >= 1 s
        (999.0, 1000, "low"),  # 1 ms per request, < 1 s
        (25.0, 1, "medium"),
        (24.9, 1, "low"),
        (1_000.0, 100, "medium"),  # 10 ms per request, 1 s in total
        (999.0, 100, "low"),
        (0.0, 0, "low"),
    ],
)
def test_severity_rule_thresholds(impact_ms, occurrences, expected):
    from tracehound.analyzer.findings import severity_for

    assert severity_for(impact_ms, occurrences) == expected


def _mixed_store():
    """Several kinds at once: N+1 (query/cache/http), repeated query, slow query/span/endpoint,
    cache misses, churn, consecutive HTTP."""
    traces = []
    for i in range(40):
        t = TraceBuilder(route="/slow", duration_ms=1500, start_ns=BASE_NS + i * MIN)
        t.connect(1, 8)
        t.cache("get", "book:{n}", i % 5 == 0, 10, 1)  # 240 ms-ish of misses in total: not high
        t.http("GET", "https://inventory.local/stock", 20, 900 if i % 10 == 3 else 10)
        t.db("SELECT * FROM big WHERE x = %s", 1000, 1200, params_hash=f"b{i}")
        traces.append(t)
        traces.append(n_plus_one_trace(n=10, each_ms=30, start_ns=BASE_NS + i * MIN + 30_000 * MS))
        r = TraceBuilder(route="/cart", duration_ms=100, start_ns=BASE_NS + i * MIN + 10_000 * MS)
        for k in range(3):
            r.db("SELECT * FROM settings WHERE id = %s", 1 + k * 6, 5, params_hash="same")
        for k in range(6):
            r.cache("get", "price:{n}", True, 30 + k * 2, 1)
        traces.append(r)
    for i in range(3):
        t = TraceBuilder(route="/sync", duration_ms=4000, start_ns=BASE_NS + i * MIN + 20_000 * MS)
        for k, path in enumerate(("users", "orders", "stock")):
            t.http("GET", f"https://api.partner.io/v1/{path}/42", 10 + k * 1210, 1200)
        traces.append(t)
    return traces


def test_every_kind_uses_the_one_rule(db):
    from tracehound.analyzer.findings import severity_for

    store(db, *_mixed_store())
    found = analyze(db)
    kinds = {f["kind"] for f in found}
    assert {"n_plus_one_query", "repeated_query", "n_plus_one_cache", "consecutive_http", "slow_query",
            "slow_endpoint", "cache_miss_ratio", "connection_churn"} <= kinds  # fmt: skip
    for f in found:
        assert f["severity"] == severity_for(f["impact_ms"], f["occurrences"]), (f["kind"], f["title"])


def test_small_total_cache_misses_are_not_high_and_a_big_n_plus_one_is(db):
    """The review's inversion: 240 ms of cache misses was 'high', a 985 ms-per-request N+1 'medium'."""
    traces = []
    for i in range(20):
        t = TraceBuilder(route="/recs", duration_ms=50, start_ns=BASE_NS + i * MIN)
        t.cache("get", "recs:{n}", False, 1, 2)  # every lookup misses: 2 ms + 10 ms recompute
        t.cache("set", "recs:{n}", None, 13, 1)  # 20 x 12 ms = 240 ms in total
        traces.append(t)
    traces.append(n_plus_one_trace(n=100, each_ms=10, gap_ms=0.5, start_ns=BASE_NS + 30 * MIN))
    store(db, *traces)
    found = analyze(db)
    [miss] = by_kind(found, "cache_miss_ratio")
    [n1] = by_kind(found, "n_plus_one_query")
    assert miss["impact_ms"] == pytest.approx(240.0) and miss["severity"] == "low"
    assert n1["impact_ms"] == pytest.approx(990.0) and n1["severity"] == "high"


def test_count_only_n_plus_one_stays_low(db):
    """25 repeats in 12.5 ms (below the 50 ms threshold) in 100 requests: > 1 s in total, which the
    rule alone would make medium, but a count-only N+1 is reported at low severity whatever the volume."""
    store(db, *[n_plus_one_trace(n=25, each_ms=0.5, start_ns=BASE_NS + i * MIN) for i in range(100)])
    [f] = by_kind(analyze(db), "n_plus_one_query")
    assert f["impact_ms"] >= 1000.0 and f["evidence"]["below_time_threshold"]
    assert f["severity"] == "low"
