"""Config overrides, the incremental worker, analyzer_status and the `tracehound analyze` CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import analyzer_helpers
import pytest
from analyzer_helpers import by_kind
from th_traces import BASE_NS, MS, n_plus_one_trace, store
from tracehound.analyzer import analyze
from tracehound.analyzer.config import AnalyzerConfig, ConfigError
from tracehound.analyzer.worker import AnalyzerWorker, analyzer_status

from tracehound.settings import ServerSettings

db = analyzer_helpers.db  # the fixture
MIN = 60_000 * MS


def test_overrides_per_route_and_service(db):
    store(db, n_plus_one_trace(route="/a"), n_plus_one_trace(route="/b"), n_plus_one_trace(route="/admin/x"))
    config = {
        "detectors": {"n_plus_one_query": {"min_count": 5}},
        "overrides": [
            {"route": "/b", "detector": "n_plus_one_query", "min_count": 11},
            {"service": "shop", "route": "/admin/*", "enabled": False},
        ],
    }
    assert sorted(f["endpoint"] for f in by_kind(analyze(db, config=config), "n_plus_one_query")) == ["/a"]


def test_config_file_and_errors(tmp_path):
    p = tmp_path / "tracehound.toml"
    p.write_text(
        '[detectors.slow_query]\nmin_duration_ms = 500\n[[overrides]]\nroute = "/x"\nmin_count = 9\n'
    )
    cfg = AnalyzerConfig.load(p)
    assert cfg.get("slow_query")["min_duration_ms"] == 500
    assert cfg.get("n_plus_one_query", "svc", "/x")["min_count"] == 9
    assert cfg.get("n_plus_one_query", "svc", "/y")["min_count"] == 5
    with pytest.raises(ConfigError, match="unknown detector 'n_plus_one'"):
        AnalyzerConfig.from_dict({"detectors": {"n_plus_one": {}}})
    with pytest.raises(ConfigError, match="min_cout is not a known setting"):
        AnalyzerConfig.from_dict({"detectors": {"n_plus_one_query": {"min_cout": 3}}})
    with pytest.raises(ConfigError, match="must be int"):
        AnalyzerConfig.from_dict({"detectors": {"n_plus_one_query": {"min_count": "3"}}})


def test_worker_waits_for_quiet_then_merges_into_same_finding(db):
    worker = AnalyzerWorker(db, ServerSettings(), config={"worker": {"quiet_seconds": 0.0}})
    first = n_plus_one_trace()
    root_less = n_plus_one_trace()
    root_less.spans = [s for s in root_less.spans if s["SpanKind"] != "Server"]
    store(db, first, root_less)
    assert worker.run_once() == 1  # the trace without its server span waits
    [f1] = by_kind(_all(db), "n_plus_one_query")
    assert f1["occurrences"] == 1
    status = analyzer_status(db)
    assert status["spans_total"] == 23 and status["traces_analyzed"] == 1 and status["traces_pending"] == 1
    assert status["findings"] == 1 and status["last_run_at"]
    store(db, n_plus_one_trace(start_ns=BASE_NS + MIN))
    assert worker.run_once() == 1
    [f2] = by_kind(_all(db), "n_plus_one_query")
    assert f2["id"] == f1["id"] and f2["occurrences"] == 2
    assert worker.run_once() == 0  # nothing new: nothing re-analysed
    assert db.execute("SELECT count(*) FROM finding_occurrences").fetchall()[0][0] == 2


def test_worker_quiet_period_and_restart(db):
    worker = AnalyzerWorker(db, ServerSettings(), config={"worker": {"quiet_seconds": 30.0}})
    store(db, n_plus_one_trace())
    assert worker.run_once() == 0  # not quiet yet
    assert analyzer_status(db)["traces_pending"] == 1
    restarted = AnalyzerWorker(db, ServerSettings(), config={"worker": {"quiet_seconds": 0.0}})
    assert restarted.run_once() == 1  # rescans from the pending trace's rowid
    again = AnalyzerWorker(db, ServerSettings(), config={"worker": {"quiet_seconds": 0.0}})
    assert again.run_once() == 0


def test_worker_thread_start_stop_and_windowed_detectors(db):
    cfg = {"worker": {"quiet_seconds": 0.0, "interval_seconds": 0.05, "aggregate_interval_seconds": 0.0}}
    worker = AnalyzerWorker(db, ServerSettings(), config=cfg)
    worker.start()
    try:
        traces = []
        for i in range(12):
            t = n_plus_one_trace(start_ns=BASE_NS + i * MIN)
            t.connect(0.1, 0.5)
            traces.append(t)
        store(db, *traces)
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not by_kind(_all(db), "connection_churn"):
            time.sleep(0.1)
    finally:
        worker.stop(timeout=10)
    kinds = {f["kind"] for f in _all(db)}
    assert {"n_plus_one_query", "connection_churn"} <= kinds
    assert not worker._thread.is_alive()


def _all(con):
    from tracehound.analyzer.findings import findings_as_dicts

    return findings_as_dicts(con.cursor())


def _cli(*args, cwd=None):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["tracehound", "analyze", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_cli_table_json_and_errors(tmp_path):
    from tracehound.collector.store import open_database

    path = tmp_path / "th.duckdb"
    con = open_database(path)
    store(con, n_plus_one_trace(), n_plus_one_trace(start_ns=BASE_NS + 2 * 24 * 60 * MIN))
    con.close()
    out = _cli("--db", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "n_plus_one_query" in out.stdout and "app/templates/books.html:12" in out.stdout
    js = _cli("--db", str(path), "--json", "--since", "2024-05-07", cwd=tmp_path)
    assert js.returncode == 0, js.stderr
    [f] = json.loads(js.stdout)
    assert f["occurrences"] == 1 and f["total_occurrences"] == 2  # window-scoped, all-time total kept
    bad_date = _cli("--db", str(path), "--since", "last week", cwd=tmp_path)
    assert bad_date.returncode == 2 and "ISO-8601" in bad_date.stderr
    missing = _cli("--db", str(tmp_path / "nope.duckdb"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    holder = open_database(path)  # another process holds the file: locked
    try:
        locked = _cli("--db", str(path), cwd=tmp_path)
    finally:
        holder.close()
    assert locked.returncode == 2 and "cannot open" in locked.stderr and len(locked.stderr.splitlines()) == 1


def test_worker_reanalyses_trace_when_late_spans_arrive(db):
    """A span arriving after its trace was analysed re-queues the trace; occurrences are replaced."""
    worker = AnalyzerWorker(db, ServerSettings(), config={"worker": {"quiet_seconds": 0.0}})
    t = n_plus_one_trace(n=4, each_ms=20)  # 4 repeats: below the N+1 count threshold
    store(db, t)
    assert worker.run_once() == 1
    assert not by_kind(_all(db), "n_plus_one_query")
    before = len(t.spans)
    for i in range(2):  # two more repeats of the loop, exported late (e.g. by another batch)
        t.db(
            "SELECT authors.id, authors.name FROM authors WHERE authors.id = %(pk_1)s",
            100 + i * 21,
            20,
            params_hash=f"late{i}",
        )
    t.spans = t.spans[before:]
    store(db, t)
    assert worker.run_once() == 1
    assert worker.late_traces == 1
    [f] = by_kind(_all(db), "n_plus_one_query")
    assert f["occurrences"] == 1 and f["evidence"]["queries_per_request_max"] == 6
    rows = db.execute("SELECT span_count FROM trace_summaries").fetchall()
    assert rows == [(before + 2,)]
    assert worker.run_once() == 0


def test_cli_rejects_bad_memory_limit(tmp_path, monkeypatch):
    from tracehound.collector.store import open_database

    path = tmp_path / "th.duckdb"
    open_database(path).close()
    monkeypatch.setenv("TRACEHOUND_DUCKDB_MEMORY_LIMIT", "lots")
    proc = _cli("--db", str(path))
    assert proc.returncode == 2
    assert "TRACEHOUND_DUCKDB_MEMORY_LIMIT='lots' is not a DuckDB memory size" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
