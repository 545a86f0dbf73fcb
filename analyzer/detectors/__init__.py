"""Detector registry: one module per finding kind.

Each module has ``NAME``, ``DEFAULTS`` (thresholds, documented in its docstring with their source),
``detect(cur, cfg) -> int`` (appends occurrences of the traces in ``th_traces`` to ``th_occ``) and
``describe(finding, thresholds) -> dict`` (title, evidence, fix_hint, optional ``max_severity``
cap; the severity itself is the one rule :func:`tracehound.analyzer.findings.severity_for`).
A per-trace detector may instead gather candidates in ``detect`` (called once per chunk of traces)
and append its occurrences in ``finish(cur, cfg) -> int``, called once after the last chunk.
``WINDOWED`` lists the detectors that need a window of traces (percentiles, ratios, baselines); the
others judge each trace on its own, so the incremental worker runs them on every new trace.
"""

from __future__ import annotations

from . import (
    cache_miss_ratio,
    connection_churn,
    consecutive_http,
    n_plus_one_cache,
    n_plus_one_http,
    n_plus_one_query,
    repeated_query,
    slow_endpoint,
    slow_query,
    slow_span,
)

_MODULES = [
    n_plus_one_query,
    repeated_query,
    n_plus_one_cache,
    n_plus_one_http,
    consecutive_http,
    slow_query,
    slow_endpoint,
    slow_span,
    cache_miss_ratio,
    connection_churn,
]

DETECTORS = {m.NAME: m for m in _MODULES}
WINDOWED = {"slow_query", "slow_endpoint", "slow_span", "cache_miss_ratio", "connection_churn"}
PER_TRACE = [name for name in DETECTORS if name not in WINDOWED]
