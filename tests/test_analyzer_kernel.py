"""The per-trace kernel (``analyzer/_kernel.c``) against the SQL path: the same summaries, findings
and occurrences on the benchmark generator's traces (real DuckDB files, several chunks, two
threads), and clear errors for malformed input."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import analyzer_helpers  # noqa: E402
from gen_spans import generate  # noqa: E402
from tracehound.analyzer import analyze, engine, kernel  # noqa: E402

db = analyzer_helpers.db  # the fixture
analyzer_path = analyzer_helpers.analyzer_path  # runs a test on the kernel and the SQL path

END_NS = 1_763_000_000 * 1_000_000_000


def _require_kernel():
    if not kernel.available():
        if os.environ.get("CI") == "true":
            pytest.fail("the analyzer's C kernel (_kernel.c) was not built")
        pytest.skip("the analyzer's C kernel (_kernel.c) was not built (no C compiler at install)")


def _analyse(path, monkeypatch, path_name: str) -> dict:
    """Analyse the store at ``path`` on one path; everything the analysis wrote, normalised."""
    from tracehound.collector.store import open_database

    if path_name == "sql":
        monkeypatch.setenv("TRACEHOUND_ANALYZER_KERNEL", "sql")
    else:
        monkeypatch.delenv("TRACEHOUND_ANALYZER_KERNEL", raising=False)
    con = open_database(path)
    con.execute("SET threads = 2")
    try:
        found = analyze(con)
        summaries = con.execute("SELECT * FROM trace_summaries ORDER BY trace_id").fetchall()
        occurrences = [
            (fid, trace, impact, n, dur, sorted(ids), json.loads(detail), (fp, line))
            for fid, trace, impact, n, dur, ids, detail, fp, line in con.execute(
                """SELECT finding_id, trace_id, impact_ms, span_count, duration_ms, span_ids, detail,
                          code_filepath, code_lineno
                   FROM finding_occurrences ORDER BY finding_id, trace_id"""
            ).fetchall()
        ]
    finally:
        con.close()
    return {
        "findings": sorted(
            (f["id"], f["kind"], f["occurrences"], f["impact_ms"], f["severity"]) for f in found
        ),
        "summaries": summaries,
        "occurrences": occurrences,
    }


def test_kernel_and_sql_paths_agree_on_generated_traces(tmp_path, monkeypatch):
    _require_kernel()
    base = tmp_path / "gen.duckdb"
    generate(base, 60_000, days=2, end_ns=END_NS, seed=11)
    shutil.copy(base, tmp_path / "sql.duckdb")
    monkeypatch.setattr(engine, "CHUNK_SPANS", 15_000)  # several chunks, as on a large window
    with_kernel = _analyse(base, monkeypatch, "kernel")
    with_sql = _analyse(tmp_path / "sql.duckdb", monkeypatch, "sql")

    assert len(with_kernel["findings"]) >= 8  # the generator plants problems of most kinds
    assert with_kernel["findings"] == with_sql["findings"]
    assert len(with_kernel["summaries"]) > 1_000
    assert with_kernel["summaries"] == with_sql["summaries"]
    kernel_occ, sql_occ = with_kernel["occurrences"], with_sql["occurrences"]
    assert len(kernel_occ) == len(sql_occ) > 1_000
    # everything but the code location, which SQL's mode() leaves to chance on a tie
    assert [o[:7] for o in kernel_occ] == [o[:7] for o in sql_occ]
    same_code = sum(a[7] == b[7] for a, b in zip(kernel_occ, sql_occ, strict=True))
    assert same_code >= 0.9 * len(kernel_occ)


def _columns(n: int, **override) -> dict:
    cols = {
        name: np.zeros(n, np.uint64)
        for name in ("tix", "sid", "pid", "key_h", "op_h", "params_e", "code_h", "orm_h")
    }
    cols.update(start_ns=np.zeros(n, np.int64), dur_ns=np.zeros(n, np.int64))
    cols.update(cat=np.zeros(n, np.uint8), flags=np.zeros(n, np.uint8))
    cols.update(uselist=np.full(n, -1, np.int8), cache_hit=np.full(n, -1, np.int8))
    cols.update(override)
    return cols


def test_span_ids_that_are_not_hex_do_not_stop_the_analysis(db, analyzer_path):
    """``insert_span_rows`` (tools, tests) accepts any text as a span id; the facts hold NULL for
    one that is not hex. Both paths analyse the trace anyway: its N+1 is found, and the span whose
    parent id is unreadable counts as a root-level child-less span."""
    from tracehound.collector.store import insert_span_rows

    t0 = END_NS - 10**9
    rows = [
        dict(
            Timestamp=t0,
            TraceId="ab" * 16,
            SpanId="not-hex!",
            SpanName="GET /books",
            SpanKind="Server",
            Duration=200 * 10**6,
            ServiceName="shop",
            SpanAttributes={"http.route": "/books"},
        ),
    ]
    for i in range(6):
        rows.append(
            dict(
                Timestamp=t0 + (i + 1) * 10**6,
                TraceId="ab" * 16,
                SpanId=f"{i + 1:016x}",
                ParentSpanId="not-hex!",
                SpanName="SELECT",
                SpanKind="Client",
                Duration=15 * 10**6,
                ServiceName="shop",
                SpanAttributes={
                    "db.system": "postgresql",
                    "db.statement": f"SELECT * FROM authors WHERE id = {i}",
                },
            )
        )
    insert_span_rows(db, rows)
    found = analyze(db)
    assert [(f["kind"], f["occurrences"]) for f in found] == [("n_plus_one_query", 1)]
    assert db.execute("SELECT span_count, db_count FROM trace_summaries").fetchall() == [(7, 6)]


def test_kernel_rejects_malformed_columns():
    _require_kernel()
    from tracehound.analyzer import _kernel

    with pytest.raises(KeyError, match="missing column flags"):
        _kernel.run({k: v for k, v in _columns(3).items() if k != "flags"}, [])
    with pytest.raises(ValueError, match="column pid has 2 rows in piece 0, not 3"):
        _kernel.run(_columns(3, pid=np.zeros(2, np.uint64)), [])
    pieces = {k: [v[:1], v[1:]] for k, v in _columns(3).items()}
    with pytest.raises(ValueError, match="column sid has 1 pieces, not 2"):
        _kernel.run({**pieces, "sid": [np.zeros(3, np.uint64)]}, [])
    with pytest.raises(ValueError, match="column dur_ns has 2 rows in piece 0, not 1"):
        _kernel.run({**pieces, "dur_ns": [np.zeros(2, np.int64), np.zeros(1, np.int64)]}, [])
    with pytest.raises(ValueError, match="bad category code 9"):
        _kernel.run(_columns(3, cat=np.array([0, 9, 1], np.uint8)), [])
    with pytest.raises(ValueError, match="spec bit must be 0-7"):
        _kernel.run(_columns(3), [(8, False, False, 5)])
    out = _kernel.run(_columns(0), [(0, False, True, 5)], 2)  # nothing in: empty tables out
    assert out["traces"]["tix"] == b"" and out["groups"][0]["ids"] == b""


def test_kernel_reads_columns_in_pieces_as_one():
    """Columns given as pieces (an Arrow table's record batches, as ``kernel._fetch`` passes them)
    give the same result as contiguous columns, with traces whose rows straddle the pieces."""
    _require_kernel()
    from tracehound.analyzer import _kernel

    rng = np.random.default_rng(7)
    n, traces = 5_000, 150
    tix = rng.integers(1, traces + 1, n).astype(np.uint64)  # rows of a trace scattered everywhere
    sid = np.arange(1, n + 1, dtype=np.uint64)
    pid = np.where(rng.random(n) < 0.8, rng.integers(1, n + 1, n), 0).astype(np.uint64)
    cols = _columns(
        n,
        tix=tix,
        sid=sid,
        pid=pid,
        start_ns=rng.integers(0, 10**6, n).astype(np.int64),
        dur_ns=rng.integers(1, 10**5, n).astype(np.int64),
        cat=rng.integers(0, 7, n).astype(np.uint8),
        key_h=rng.integers(1, 6, n).astype(np.uint64),
        op_h=rng.integers(1, 6, n).astype(np.uint64),
        params_e=rng.integers(1, 50, n).astype(np.uint64),
        code_h=rng.integers(0, 3, n).astype(np.uint64),
        flags=rng.integers(0, 4, n).astype(np.uint8),
    )
    specs = [(0, False, True, 2), (1, True, False, 2)]
    whole = _kernel.run(cols, specs, 2)
    cuts = [0, 1_000, 1_000, 3_333, n]  # with an empty piece
    pieces = {k: [v[a:b] for a, b in itertools.pairwise(cuts)] for k, v in cols.items()}
    assert _kernel.run(pieces, specs, 2) == whole
    assert len(whole["traces"]["tix"]) == 8 * traces
    assert all(len(g["ids"]) > 0 for g in whole["groups"])


def test_kernel_covered_time_of_overlapping_and_overhanging_children():
    """A 100 ms parent with children [10, 50) and [30, 70) (overlapping: 60 ms covered) and one
    [90, 130) that outlives it (clipped to 10 ms): 70 ms covered, 30 ms exclusive."""
    _require_kernel()
    from tracehound.analyzer import _kernel

    ms = 1_000_000
    cols = _columns(
        4,
        tix=np.full(4, 7, np.uint64),
        sid=np.array([1, 2, 3, 4], np.uint64),
        pid=np.array([0, 1, 1, 1], np.uint64),
        start_ns=np.array([0, 10, 30, 90], np.int64) * ms,
        dur_ns=np.array([100, 40, 40, 40], np.int64) * ms,
        cat=np.array([kernel.CAT_CODES["server"], *[kernel.CAT_CODES["db"]] * 3], np.uint8),
    )
    traces = _kernel.run(cols, [])["traces"]
    dur = np.frombuffer(traces["dur"], np.int64)  # db, cache, http, template, self
    cov = np.frombuffer(traces["cov"], np.int64)
    counts = np.frombuffer(traces["counts"], np.int32)  # spans, db, cache, hits, misses, http
    assert list(counts) == [4, 3, 0, 0, 0, 0]
    assert dur[0] == 120 * ms and dur[4] == 100 * ms
    assert cov[4] == 70 * ms and cov[0] == 0
