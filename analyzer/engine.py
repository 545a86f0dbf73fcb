"""One analysis pass over a set of traces, and the batch entry point :func:`analyze`."""

from __future__ import annotations

import datetime as dt

from tracehound.analyzer import findings as findings_mod
from tracehound.analyzer import kernel
from tracehound.analyzer.config import AnalyzerConfig
from tracehound.analyzer.detectors import DETECTORS, PER_TRACE, WINDOWED
from tracehound.analyzer.detectors._common import create_buffers, temp_tables
from tracehound.analyzer.detectors._repeats import build_anchors
from tracehound.analyzer.spans import load_spans, select_traces
from tracehound.analyzer.summaries import build_summaries, summaries_from_store, write_trace_summaries

#: Detectors that group repeats under an anchor (need ``th_anchor`` and ``th_rep``).
REPEAT_KINDS = {"n_plus_one_query", "repeated_query", "n_plus_one_cache", "n_plus_one_http"}


#: Per-trace work runs over chunks of about this many spans, so memory stays bounded (~150 bytes per
#: span in flight) whatever the window size. Traces go to chunks by their first span's
#: ``otel_traces`` rowid (equal rowid ranges), so a chunk's spans lie in one stretch of rowids and
#: its scan of ``span_facts`` skips the rest of the table (zone maps); a trace whose spans arrived
#: far apart only widens its chunk's stretch. 10 M spans in 4 chunks peak at ~1.7 GB RSS (the bench,
#: with the memory_limit of 1500MB that `tracehound analyze` sets).
CHUNK_SPANS = 3_000_000


def run_pass(
    cur, cfg: AnalyzerConfig, kinds: list[str], summaries: bool = True, min_rowid: int | None = None
) -> list[str]:
    """Analyse the traces already selected into ``th_traces`` with the detectors ``kinds``.

    Phase 1 (per trace: summaries and the per-trace detectors) runs over chunks of traces of about
    :data:`CHUNK_SPANS` spans each (summaries and repeat groups; ``consecutive_http``, which reads
    only slow HTTP calls, runs once over every trace after the last chunk); phase 2 (the windowed
    detectors) runs once over all the selected traces, reading their spans through a view of
    ``span_facts``. Then, in one transaction, replaces those traces' ``trace_summaries`` rows (if
    ``summaries``; otherwise the stored summaries are read back instead of recomputing exclusive
    times) and their occurrences of ``kinds``, and refreshes every finding touched. Returns the
    touched finding ids.
    """
    # Nothing here depends on the order rows are written in (every ordered result says ORDER BY), and
    # without it DuckDB writes temp tables and inserts in parallel. Only for this cursor's session.
    keep_order = cur.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    cur.execute("SET SESSION preserve_insertion_order = false")
    try:
        return _run_pass(cur, cfg, kinds, summaries, min_rowid)
    finally:
        cur.execute(f"SET SESSION preserve_insertion_order = {'true' if keep_order else 'false'}")


def _run_pass(cur, cfg, kinds, summaries, min_rowid) -> list[str]:
    per_trace = [k for k in kinds if k not in WINDOWED and cfg.any_enabled(k)]
    windowed = [k for k in kinds if k in WINDOWED and cfg.any_enabled(k)]
    create_buffers(cur)
    if summaries or per_trace:
        _per_trace_phase(cur, cfg, per_trace, summaries, min_rowid)
    if windowed:
        load_spans(cur, min_rowid=min_rowid)
        if not summaries:  # worker's windowed re-run: the per-trace pass stored these summaries
            summaries_from_store(cur)
        for kind in windowed:
            DETECTORS[kind].detect(cur, cfg)
        for table in ("th_w", "th_trace_rk"):
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute("BEGIN TRANSACTION")
    try:
        if summaries:
            write_trace_summaries(cur)
        findings_mod.delete_occurrences(cur, kinds, WINDOWED)
        findings_mod.store_occurrences(cur)
        ids = findings_mod.refresh(cur, cfg)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return ids


def _per_trace_phase(cur, cfg, per_trace: list[str], summaries: bool, min_rowid) -> None:
    n_spans, lo, hi = cur.execute(
        "SELECT coalesce(sum(n_spans), 0), min(rid_lo), max(rid_lo) FROM th_traces"
    ).fetchall()[0]
    chunks = max(1, -(-n_spans // CHUNK_SPANS))
    if summaries:
        cur.execute("DROP TABLE IF EXISTS th_summary")
        cur.execute("DROP TABLE IF EXISTS th_ktr")
    if chunks == 1:
        _chunk(cur, cfg, per_trace, summaries, min_rowid, None)
    else:
        # chunk i: the traces whose first span's rowid lies in the i-th of `chunks` equal rowid
        # ranges (spans are appended in rowid order, so about equal shares of the spans); th_traces
        # is set aside (a rename, no copy) and each chunk's traces are selected from it
        width = -(-(hi - lo + 1) // chunks)
        cur.execute("ALTER TABLE th_traces RENAME TO th_traces_all")
        try:
            for i in range(chunks):
                cur.execute(
                    """CREATE OR REPLACE TEMP TABLE th_traces AS
                       SELECT * FROM th_traces_all WHERE rid_lo >= ? AND rid_lo < ?""",
                    [lo + i * width, lo + (i + 1) * width],
                )
                rid_range = cur.execute("SELECT min(rid_lo), max(rid_hi) FROM th_traces").fetchall()[0]
                if rid_range[0] is not None:
                    _chunk(cur, cfg, per_trace, summaries, min_rowid, rid_range)
        finally:
            cur.execute("DROP TABLE IF EXISTS th_traces")
            cur.execute("ALTER TABLE th_traces_all RENAME TO th_traces")
    if summaries and kernel.available():
        kernel.finish_summaries(cur)
    # the other per-trace detectors (consecutive_http) read few spans (slow HTTP calls, filtered
    # before any join): one run over every trace costs less than one per chunk
    once = [k for k in per_trace if k not in REPEAT_KINDS]
    if once:
        load_spans(cur, min_rowid=min_rowid)
        for kind in once:
            DETECTORS[kind].detect(cur, cfg)
    for kind in per_trace:  # detectors that gather over the chunks, then emit once
        finish = getattr(DETECTORS[kind], "finish", None)
        if finish is not None:
            finish(cur, cfg)
    for table in ("th_rep", "th_rkeys", "th_anchor", "th_cand", "th_src", "th_cov"):
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def _chunk(cur, cfg, per_trace: list[str], summaries: bool, min_rowid, rid_range) -> None:
    """The per-trace work on the traces in ``th_traces`` (one chunk), whose spans have rowids in
    ``rid_range`` (inclusive; ``None`` = anywhere): the summaries and the repeat detectors' groups."""
    load_spans(cur, min_rowid=min_rowid, rid_range=rid_range)
    repeats = [DETECTORS[k] for k in per_trace if k in REPEAT_KINDS]
    if kernel.available():  # summaries and every repeat detector's groups in one pass
        append = summaries and "th_ktr" in temp_tables(cur, "th_ktr")
        kernel.run_chunk(cur, cfg, repeats, summaries=summaries, append=append)
    else:
        if repeats:
            build_anchors(cur, repeats)
        if summaries:  # every chunk's summaries gather in th_summary
            build_summaries(cur, append="th_summary" in temp_tables(cur, "th_summary"))
        for module in repeats:
            module.detect(cur, cfg)


def to_ns(value) -> int | None:
    """An ISO-8601 string, ``datetime`` (naive = UTC) or int (ns since epoch) as ns since the epoch.

    Raises ``ValueError`` with a readable message for anything else.
    """
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO-8601 date/time (e.g. 2024-05-01 or 2024-05-01T12:00)"
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    raise ValueError(f"unsupported date/time value {value!r}")


def analyze(con, since=None, until=None, config=None) -> list[dict]:
    """Re-analyse every trace whose root server span starts in ``[since, until)``.

    ``since``/``until``: ISO-8601 strings, datetimes (naive = UTC) or ints (ns since epoch); ``None``
    = unbounded. ``config``: a dict shaped like ``tracehound.toml`` or an :class:`AnalyzerConfig`.
    Replaces those traces' summaries and per-trace detectors' occurrences; for the windowed detectors
    (computed over exactly this window) only the occurrences of the groups they could evaluate in it
    (enough volume) are replaced, so a short window never erases an earlier finding.
    Returns the findings that have occurrences in the window, as dicts (``findings`` columns,
    ``evidence`` parsed, plus ``code_location``) by window impact desc, WINDOW-SCOPED like
    ``GET /api/findings?since=``: ``occurrences``/``impact_ms``/``first_seen``/``last_seen`` count only
    the window's traces; ``total_occurrences``/``total_impact_ms`` are the finding's all-time totals.
    Raises ``ValueError`` for bad dates, :class:`tracehound.analyzer.config.ConfigError` for bad config.
    """
    cfg = AnalyzerConfig.from_dict(config)
    since_ns, until_ns = to_ns(since), to_ns(until)
    if since_ns is not None and until_ns is not None and since_ns >= until_ns:
        raise ValueError("--since must be earlier than --until")
    cur = con.cursor()
    try:
        select_traces(cur, since_ns, until_ns)
        ids = run_pass(cur, cfg, [*PER_TRACE, *sorted(WINDOWED)])
        return _window_scoped(cur, findings_mod.findings_as_dicts(cur, ids))
    finally:
        cur.close()


def _window_scoped(cur, found: list[dict]) -> list[dict]:
    """``found`` with counts over the traces in ``th_traces`` only (see :func:`analyze`)."""
    window = {
        r[0]: r[1:]
        for r in cur.execute(
            """SELECT finding_id, count(*), sum(impact_ms), min("timestamp"), max("timestamp")
               FROM finding_occurrences WHERE trace_id IN (SELECT trace_id FROM th_traces) GROUP BY ALL"""
        ).fetchall()
    }
    out = []
    for f in found:
        if f["id"] not in window:
            continue
        n, impact, first, last = window[f["id"]]
        f["total_occurrences"], f["total_impact_ms"] = f["occurrences"], f["impact_ms"]
        f.update(occurrences=n, impact_ms=round(impact or 0.0, 3), first_seen=first, last_seen=last)
        out.append(f)
    out.sort(key=lambda f: (-f["impact_ms"], f["id"]))
    return out
