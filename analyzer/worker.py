"""The incremental analyzer that runs inside ``tracehound serve``, and :func:`analyzer_status`.

How it keeps up with ingest:

* Each pass scans only the rows appended since the previous pass (``otel_traces.rowid`` is the
  ingest order; one ``GROUP BY TraceId`` over the new rows), and remembers per pending trace its first
  rowid, when it last saw a span of it (monotonic clock) and whether a SERVER span has arrived.
* A trace is *complete* once a server span has arrived (Flask ends it after all its children) and
  no new span came for ``quiet_seconds`` (default 3 s, ``[worker]`` in ``tracehound.toml``). Complete
  traces are analysed in batches of up to ``max_traces_per_pass`` with the per-trace detectors
  (N+1s, repeated query, consecutive HTTP), scanning ``otel_traces`` only from the batch's first rowid.
  Their summaries and occurrences are written and the touched findings recomputed from all their
  occurrences, so a problem seen again merges into the same finding (same id).
* Traces with no server span after ``orphan_seconds`` (600 s) are dropped (background jobs, or the
  server span was lost).
* Late spans: a span whose trace was already analysed (it has a ``trace_summaries`` row) re-queues
  the whole trace (from its first rowid, with "server span seen" set); once quiet again the trace is
  re-analysed like a batch re-analysis: its summary and per-trace occurrences are REPLACED (not
  added), and the findings it touches are recomputed, so counts never double. The windowed
  detectors see the late span at their next run. After a restart, traces analysed before it are
  not re-queued (their spans before the saved watermark were analysed).
* Every pass first extends the span facts (:func:`tracehound.analyzer.derive.refresh_facts`) over the
  new rows, so attribute extraction happens once per span, at the ingest rate.
* Every ``aggregate_interval_seconds`` (30 s), if new traces were analysed, the windowed detectors
  (slow_endpoint, slow_query, slow_span, cache_miss_ratio, connection_churn) re-run over the last
  ``aggregate_window_hours`` (24 h) of traces, reading narrow facts columns and the stored
  ``trace_summaries`` (no exclusive-time recomputation); a re-scan whose cost grows with the window.
* State (``analyzer_state``): ``scan_rowid`` = first rowid of the oldest still-pending trace, so a
  restart rescans from there (already analysed traces are skipped); ``last_run_at``; ``traces_pending``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path

log = logging.getLogger("tracehound.analyzer")


def load_config(settings, config=None):
    """The worker's :class:`~tracehound.analyzer.config.AnalyzerConfig`: ``config`` (a TOML-shaped dict)
    if given, else ``settings.config_file``, else ``./tracehound.toml`` when present, else defaults.

    Raises :class:`tracehound.analyzer.config.ConfigError` (message names the file) when invalid.
    """
    from tracehound.analyzer.config import AnalyzerConfig

    if config is not None:
        return AnalyzerConfig.from_dict(config)
    path = getattr(settings, "config_file", None)
    if path is None and Path("tracehound.toml").is_file():
        path = Path("tracehound.toml")
    return AnalyzerConfig.load(path)


class AnalyzerWorker:
    """Background incremental analysis on ``con`` (a DuckDB connection; the worker uses its own cursor).

    ``settings`` is a :class:`tracehound.settings.ServerSettings` (its ``config_file``, or
    ``./tracehound.toml`` when present, gives thresholds and the ``[worker]`` timings); ``config``
    (a dict shaped like the TOML) overrides it. Raises :class:`tracehound.analyzer.config.ConfigError`
    for an invalid configuration.
    """

    def __init__(self, con, settings=None, config=None):
        self.cfg = load_config(settings, config)
        self.cur = con.cursor()
        self.pending: dict[str, list] = {}  # trace_id -> [first_rowid, last_seen_monotonic, has_server]
        self.scan_rowid = int(self._state("scan_rowid") or 0)
        self._first_scan = True
        self.late_traces = 0  # traces re-queued because spans arrived after their analysis
        self._analysed_since_aggregate = 0
        self._last_aggregate = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tracehound-analyzer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop after its current pass and wait up to ``timeout`` seconds."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def run_once(self, force_aggregate: bool = False) -> int:
        """One incremental pass; returns the number of traces analysed.

        ``force_aggregate`` also runs the windowed detectors now (tests, shutdown).
        """
        from tracehound.analyzer.derive import refresh_facts
        from tracehound.analyzer.detectors import PER_TRACE, WINDOWED
        from tracehound.analyzer.engine import run_pass
        from tracehound.analyzer.spans import select_traces

        with self._lock:
            self._scan()
            refresh_facts(self.cur)  # facts keep pace with ingest even while traces wait
            ready = self._ready()
            if ready:
                min_rowid = min(self.pending[t][0] for t in ready)
                select_traces(self.cur, trace_ids=ready, min_rowid=min_rowid)
                run_pass(self.cur, self.cfg, PER_TRACE, summaries=True, min_rowid=min_rowid)
                for t in ready:
                    del self.pending[t]
                self._analysed_since_aggregate += len(ready)
            w = self.cfg.worker
            due = time.monotonic() - self._last_aggregate >= w["aggregate_interval_seconds"]
            if self._analysed_since_aggregate and (due or force_aggregate):
                newest = self.cur.execute("SELECT epoch_ns(max(start)) FROM trace_summaries").fetchall()[0][0]
                if newest is not None:
                    select_traces(self.cur, since_ns=newest - int(w["aggregate_window_hours"] * 3.6e12))
                    run_pass(self.cur, self.cfg, sorted(WINDOWED), summaries=False)
                self._analysed_since_aggregate = 0
                self._last_aggregate = time.monotonic()
            self._save_state()
            return len(ready)

    # -- internals ---------------------------------------------------------------------------
    def _loop(self) -> None:
        interval = self.cfg.worker["interval_seconds"]
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # keep analysing later passes; ingest must never be affected
                log.exception("analyzer pass failed")
                self._stop.wait(min(30.0, interval * 10))
            self._stop.wait(interval)

    def _scan(self) -> None:
        rows = self.cur.execute(
            """SELECT "TraceId", min(rowid), bool_or("SpanKind" = 'Server'), max(rowid)
               FROM otel_traces WHERE rowid >= ? GROUP BY "TraceId" """,
            [self.scan_rowid],
        ).fetchall()
        if not rows:
            return
        # Traces of these rows that were analysed already: after a restart they are skipped (their
        # spans were analysed before it); otherwise these are LATE spans (arrived after the trace was
        # analysed): the trace is queued again, whole, and re-analysed once quiet.
        new_ids = [r[0] for r in rows if r[0] not in self.pending]
        done: dict[str, int] = {}
        if new_ids:
            self.cur.execute(
                "CREATE OR REPLACE TEMP TABLE th_new AS SELECT unnest(?::VARCHAR[]) AS t", [new_ids]
            )
            done = dict(
                self.cur.execute(
                    """SELECT d.t, min(f.rid)
                       FROM (SELECT t, hash(t) AS h FROM th_new SEMI JOIN trace_summaries s ON s.trace_id = t) d
                       LEFT JOIN span_facts f ON f.trace_h = d.h GROUP BY d.t"""
                ).fetchall()
            )
        first_scan, self._first_scan = self._first_scan, False
        now = time.monotonic()
        for trace_id, first, has_server, last in rows:
            self.scan_rowid = max(self.scan_rowid, last + 1)
            if trace_id in done:
                if first_scan:
                    continue
                self.late_traces += 1
                old_first = done[trace_id]
                self.pending[trace_id] = [first if old_first is None else min(first, old_first), now, True]
                continue
            entry = self.pending.get(trace_id)
            if entry is None:
                self.pending[trace_id] = [first, now, has_server]
            else:
                entry[0] = min(entry[0], first)
                entry[1] = now
                entry[2] = entry[2] or has_server

    def _ready(self) -> list[str]:
        w = self.cfg.worker
        now = time.monotonic()
        ready, orphans = [], []
        for trace_id, (_first, seen, has_server) in self.pending.items():
            if has_server and now - seen >= w["quiet_seconds"]:
                ready.append(trace_id)
            elif not has_server and now - seen >= w["orphan_seconds"]:
                orphans.append(trace_id)
        for t in orphans:
            del self.pending[t]
        ready.sort(key=lambda t: self.pending[t][0])
        return ready[: int(w["max_traces_per_pass"])]

    def _state(self, key: str) -> str | None:
        rows = self.cur.execute("SELECT value FROM analyzer_state WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    def _save_state(self) -> None:
        safe = min((e[0] for e in self.pending.values()), default=self.scan_rowid)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
        self.cur.executemany(
            "INSERT OR REPLACE INTO analyzer_state VALUES (?, ?)",
            [("scan_rowid", str(safe)), ("last_run_at", now), ("traces_pending", str(len(self.pending)))],
        )


def analyzer_status(con) -> dict:
    """Counters for ``GET /api/status``.

    Returns ``{"spans_total": int, "traces_analyzed": int, "traces_pending": int, "findings": int,
    "last_run_at": ISO-8601 UTC string or None}``. ``traces_pending`` is the worker's count of traces
    seen but not yet analysed (waiting for their server span or for the quiet period) at its last pass.
    """
    cur = con.cursor()
    try:
        spans, traces, findings = cur.execute(
            """SELECT (SELECT count(*) FROM otel_traces), (SELECT count(*) FROM trace_summaries),
                      (SELECT count(*) FROM findings)"""
        ).fetchall()[0]
        state = dict(
            cur.execute(
                "SELECT key, value FROM analyzer_state WHERE key IN ('last_run_at', 'traces_pending')"
            ).fetchall()
        )
    finally:
        cur.close()
    return {
        "spans_total": spans,
        "traces_analyzed": traces,
        "traces_pending": int(state.get("traces_pending", 0)),
        "findings": findings,
        "last_run_at": state.get("last_run_at"),
    }
