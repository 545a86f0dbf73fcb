"""One analysis pass over a set of traces, and the batch entry point :func:`analyze`."""

from __future__ import annotations

import datetime as dt

from tracehound.analyzer import findings as findings_mod
from tracehound.analyzer.config import AnalyzerConfig
from tracehound.analyzer.detectors import DETECTORS, PER_TRACE, WINDOWED
from tracehound.analyzer.detectors._common import create_buffers
from tracehound.analyzer.detectors._repeats import build_anchors
from tracehound.analyzer.spans import load_spans, select_traces
from tracehound.analyzer.summaries import build_summaries, write_trace_summaries


def run_pass(
    cur, cfg: AnalyzerConfig, kinds: list[str], summaries: bool = True, min_rowid: int | None = None
) -> list[str]:
    """Analyse the traces already selected into ``th_traces`` with the detectors ``kinds``.

    Replaces, in one transaction, those traces' ``trace_summaries`` rows (if ``summaries``) and their
    occurrences of ``kinds``, then refreshes every finding touched. Returns the touched finding ids.
    """
    load_spans(cur, min_rowid=min_rowid)
    build_anchors(cur)
    build_summaries(cur)
    create_buffers(cur)
    for kind in kinds:
        if cfg.any_enabled(kind):
            DETECTORS[kind].detect(cur, cfg)
    cur.execute("BEGIN TRANSACTION")
    try:
        if summaries:
            write_trace_summaries(cur)
        findings_mod.delete_occurrences(cur, kinds)
        findings_mod.store_occurrences(cur)
        ids = findings_mod.refresh(cur, cfg)
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return ids


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
    Replaces those traces' summaries and occurrences (all detectors, including the windowed ones,
    computed over exactly this window) and returns the findings that have occurrences in it, as
    dicts (``findings`` columns, ``evidence`` parsed, plus ``code_location``), by impact desc.
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
        return findings_mod.findings_as_dicts(cur, ids)
    finally:
        cur.close()
