"""Helpers shared by the detectors: the occurrence buffer ``th_occ`` and small SQL snippets.

Every detector appends rows to the TEMP table ``th_occ``: one row per (problem, trace). The
findings step (:mod:`tracehound.analyzer.findings`) turns them into ``finding_occurrences`` rows and
merges them into ``findings`` keyed by ``fingerprint(kind, service, endpoint, pattern)``.
Detectors with window-level statistics (percentiles, ratios) also append one row per problem to
``th_stats`` (``stats`` JSON), stored in ``finding_patterns``.

Windowed detectors also record in ``th_eval`` the groups they actually EVALUATED (enough volume for
their rule: e.g. a route with >= ``min_requests``); a re-analysis only replaces the stored
occurrences of evaluated groups, so a short window (too few requests to judge) never erases what an
earlier, larger window found. NULL in ``service``/``endpoint``/``pattern`` matches anything.
"""

from __future__ import annotations

import json

OCC_COLUMNS = (
    "kind",
    "service",
    "endpoint",
    "pattern",
    "tix",
    "impact_ms",
    "span_count",
    "duration_ms",
    "span_ids",
    "code_h",
    "detail",
)


def hex_sid(col: str) -> str:
    """SQL turning a UBIGINT span id back into 16 lowercase hex chars."""
    return f"lpad(lower(hex({col})), 16, '0')"


def create_buffers(cur) -> None:
    """(Re)create the empty ``th_occ`` and ``th_stats`` buffers for one analysis pass."""
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_occ (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR, tix UBIGINT,
            impact_ms DOUBLE, span_count INTEGER, duration_ms DOUBLE, span_ids VARCHAR[],
            code_h UBIGINT, detail VARCHAR)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_stats (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR, stats VARCHAR)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_eval (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR)"""
    )


def mark_evaluated(cur, kind: str, groups) -> None:
    """Record groups (``(service, endpoint, pattern)`` tuples, ``None`` = any) a windowed detector judged.

    ``groups`` may also be a SQL ``SELECT`` (a string) returning those three columns.
    """
    if isinstance(groups, str):
        cur.execute(f"INSERT INTO th_eval SELECT ?, * FROM ({groups})", [kind])
        return
    groups = [(kind, *g) for g in groups]
    if groups:
        cur.executemany("INSERT INTO th_eval VALUES (?, ?, ?, ?)", groups)


def emit(cur, rows: list[dict]) -> int:
    """Append occurrence dicts (keys: ``OCC_COLUMNS``; ``detail`` a dict) to ``th_occ``.

    A row with a ``cand_id`` (from :func:`._repeats.find_repeats`) takes its ``span_ids`` from that
    row of ``th_cand`` (UBIGINT[] turned into hex here, in SQL: large id lists never go through Python).
    """
    if not rows:
        return 0
    import pyarrow as pa

    cols = {c: [r.get(c) for r in rows] for c in OCC_COLUMNS}
    cols["detail"] = [json.dumps(d or {}, sort_keys=True, default=str) for d in cols["detail"]]
    cols["cand_id"] = [r.get("cand_id") for r in rows]
    schema = pa.schema(
        [
            ("kind", pa.string()),
            ("service", pa.string()),
            ("endpoint", pa.string()),
            ("pattern", pa.string()),
            ("tix", pa.uint64()),
            ("impact_ms", pa.float64()),
            ("span_count", pa.int32()),
            ("duration_ms", pa.float64()),
            ("span_ids", pa.list_(pa.string())),
            ("code_h", pa.uint64()),
            ("detail", pa.string()),
            ("cand_id", pa.int64()),
        ]
    )
    cur.register("th_occ_arrow", pa.table(cols, schema=schema))
    try:
        if any(c is not None for c in cols["cand_id"]):
            cur.execute(
                f"""INSERT INTO th_occ
                    SELECT o.* EXCLUDE (span_ids, code_h, detail, cand_id),
                           coalesce(o.span_ids, list_transform(c.span_ids, lambda x: {hex_sid("x")})),
                           o.code_h, o.detail
                    FROM th_occ_arrow o LEFT JOIN th_cand c ON c.rowid = o.cand_id"""
            )
        else:
            cur.execute("INSERT INTO th_occ SELECT * EXCLUDE (cand_id) FROM th_occ_arrow")
    finally:
        cur.unregister("th_occ_arrow")
    return len(rows)


def emit_stats(cur, kind: str, service: str, endpoint: str, pattern: str, stats: dict) -> None:
    """Record window-level statistics of one problem (shown as the finding's evidence)."""
    cur.execute(
        "INSERT INTO th_stats VALUES (?, ?, ?, ?, ?)",
        [kind, service, endpoint, pattern, json.dumps(stats, sort_keys=True, default=str)],
    )


def ms(ns) -> float:
    """Nanoseconds to milliseconds, rounded to 0.001 ms."""
    return round((ns or 0) / 1e6, 3)


def severity_from_ms(avg_impact_ms: float, medium_ms: float, high_ms: float) -> str:
    """``'high'`` at or above ``high_ms`` per occurrence, ``'medium'`` at or above ``medium_ms``."""
    if avg_impact_ms >= high_ms:
        return "high"
    if avg_impact_ms >= medium_ms:
        return "medium"
    return "low"
