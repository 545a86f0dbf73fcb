"""Helpers shared by the detectors: the occurrence buffer ``th_occ`` and small SQL snippets.

Every detector appends rows to the TEMP table ``th_occ``: one row per (problem, trace). The
findings step (:mod:`tracehound.analyzer.findings`) turns them into ``finding_occurrences`` rows and
merges them into ``findings`` keyed by ``fingerprint(kind, service, endpoint, pattern)``.
Detectors with window-level statistics (percentiles, ratios) also append one row per problem to
``th_stats`` (``stats`` JSON), stored in ``finding_patterns``.
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
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR, tix INTEGER,
            impact_ms DOUBLE, span_count INTEGER, duration_ms DOUBLE, span_ids VARCHAR[],
            code_h UBIGINT, detail VARCHAR)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_stats (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR, stats VARCHAR)"""
    )


def emit(cur, rows: list[dict]) -> int:
    """Append occurrence dicts (keys: ``OCC_COLUMNS``; ``detail`` a dict) to ``th_occ``."""
    if not rows:
        return 0
    import pyarrow as pa

    cols = {c: [r.get(c) for r in rows] for c in OCC_COLUMNS}
    cols["detail"] = [json.dumps(d or {}, sort_keys=True, default=str) for d in cols["detail"]]
    schema = pa.schema(
        [
            ("kind", pa.string()),
            ("service", pa.string()),
            ("endpoint", pa.string()),
            ("pattern", pa.string()),
            ("tix", pa.int32()),
            ("impact_ms", pa.float64()),
            ("span_count", pa.int32()),
            ("duration_ms", pa.float64()),
            ("span_ids", pa.list_(pa.string())),
            ("code_h", pa.uint64()),
            ("detail", pa.string()),
        ]
    )
    cur.register("th_occ_arrow", pa.table(cols, schema=schema))
    try:
        cur.execute("INSERT INTO th_occ SELECT * FROM th_occ_arrow")
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
