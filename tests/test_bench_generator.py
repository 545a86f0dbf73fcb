"""The benchmark generator (``bench/gen_spans.py``): well-formed spans, and the analyzer finds every
planted problem and none of the clean counterparts (real DuckDB file, real analyzer)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from gen_routes import MUST_NOT_FLAG, PLANTED  # noqa: E402
from gen_spans import generate, main  # noqa: E402

SPANS = 50_000
END_NS = 1_763_000_000 * 1_000_000_000


@pytest.fixture(scope="module")
def bench_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "bench.duckdb"
    result = generate(path, SPANS, days=7, end_ns=END_NS, seed=7)
    return path, result


def _open(path):
    from tracehound.collector.store import open_database

    return open_database(path)


def test_generates_well_formed_spans(bench_db):
    path, result = bench_db
    con = _open(path)
    cur = con.cursor()
    n, traces, ids, t0, t1 = cur.execute(
        'SELECT count(*), count(DISTINCT "TraceId"), count(DISTINCT "SpanId"), epoch_ns(min("Timestamp")), '
        'epoch_ns(max("Timestamp")) FROM otel_traces'
    ).fetchone()
    assert n == result["spans"] and abs(n - SPANS) < SPANS * 0.05
    assert traces == result["traces"] and ids == n
    assert t0 >= END_NS - 7 * 86_400 * 10**9 and t1 <= END_NS + 10 * 10**9
    orphans, bad_ids, roots = cur.execute(
        """SELECT
             (SELECT count(*) FROM otel_traces c WHERE c."ParentSpanId" <> '' AND NOT EXISTS (
                 SELECT 1 FROM otel_traces p WHERE p."TraceId" = c."TraceId" AND p."SpanId" = c."ParentSpanId")),
             (SELECT count(*) FROM otel_traces WHERE NOT regexp_full_match("SpanId", '[0-9a-f]{16}')
                 OR NOT regexp_full_match("TraceId", '[0-9a-f]{32}')),
             (SELECT count(*) FROM otel_traces WHERE "ParentSpanId" = '' AND "SpanKind" = 'Server'
                 AND "SpanAttributes"['http.route'] IS NOT NULL)"""
    ).fetchone()
    assert (orphans, bad_ids, roots) == (0, 0, traces)
    # children start and end inside their parent
    outside = cur.execute(
        """SELECT count(*) FROM otel_traces c JOIN otel_traces p
             ON p."TraceId" = c."TraceId" AND p."SpanId" = c."ParentSpanId"
           WHERE c."Timestamp" < p."Timestamp"
              OR epoch_ns(c."Timestamp") + c."Duration" > epoch_ns(p."Timestamp") + p."Duration" """
    ).fetchone()[0]
    assert outside == 0
    kinds = dict(cur.execute('SELECT "SpanName", count(*) FROM otel_traces GROUP BY ALL').fetchall())
    for name in ("cache.get", "connect", "jinja2.render", "GET /books", "POST /checkout"):
        assert kinds.get(name, 0) > 0, name
    con.close()


def test_analyzer_finds_planted_problems(bench_db):
    from tracehound.analyzer import analyze

    path, _ = bench_db
    con = _open(path)
    found = analyze(con.cursor())
    con.close()
    got = {(f["kind"], f["service"], f["endpoint"]) for f in found}
    assert [p for p in PLANTED if p not in got] == []
    assert [p for p in MUST_NOT_FLAG if p in got] == []
    books = next(f for f in found if f["kind"] == "n_plus_one_query" and f["endpoint"] == "/books")
    assert "Book.author" in books["fix_hint"]


def test_deterministic_for_a_seed(tmp_path):
    a = generate(tmp_path / "a.duckdb", 3000, end_ns=END_NS, seed=3)
    b = generate(tmp_path / "b.duckdb", 3000, end_ns=END_NS, seed=3)
    assert a["spans"] == b["spans"]
    rows = []
    for name in ("a", "b"):
        con = _open(tmp_path / f"{name}.duckdb")
        rows.append(
            con.cursor()
            .execute('SELECT "SpanId", "Duration", "SpanAttributes" FROM otel_traces ORDER BY "SpanId"')
            .fetchall()
        )
        con.close()
    assert rows[0] == rows[1]


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    db = tmp_path / "x.duckdb"
    assert main(["--spans", "2000", "--db", str(db)]) == 0
    assert "generated" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--spans", "2000", "--db", str(db)])
    assert e.value.code == 2


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def test_generation_rate(tmp_path):
    """Columnar: over 40k spans per CPU-second even for a small run (a per-span Python loop building
    these rows manages ~10k). CPU time, not wall time: other tests share this 2-core machine."""
    cpu = _cpu_s()
    result = generate(tmp_path / "r.duckdb", 200_000, end_ns=END_NS)
    assert result["spans"] / (_cpu_s() - cpu) > 40_000
