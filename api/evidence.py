"""Readable evidence on the finding page: per-kind labels, units and words for the analyzer's
``evidence`` dict (the JSON twin keeps the raw dict).

Units come from the key: ``*_ms`` (and ``*_ms_avg``, ``*_ms_per_...``) are milliseconds, ``*_pct``
percent, ``*ratio``/``error_rate`` fractions 0..1 shown as percent, ``*_rpm`` requests per minute.
Booleans become words, nested dicts small tables, lists bullet lists.
"""

from __future__ import annotations

import re

#: Labels shared by every kind; a kind's own labels (``KIND_LABELS``) win.
LABELS = {
    "source_statement": "Query that loaded the parent rows",
    "relationship": "Relationship loaded lazily",
    "uselist": "Each lazy load fetches",
    "queries_per_request_avg": "Queries per request (mean)",
    "queries_per_request_max": "Queries per request (max)",
    "queries_per_request": "Queries per request",
    "mean_query_ms": "Time per query (mean)",
    "repeated_ms_avg": "Time in the repeated queries per request (mean)",
    "impact_ms_per_request_avg": "Time wasted per request (mean)",
    "batched_query_estimate": "Cost of one batched query estimated as",
    "runs_per_request_avg": "Runs per request (mean)",
    "runs_per_request_max": "Runs per request (max)",
    "calls_per_request_avg": "Calls per request (mean)",
    "calls_per_request_max": "Calls per request (max)",
    "operation": "Operation",
    "urls": "Calls made one after another",
    "sequential_ms_avg": "Time of the calls in sequence per request (mean)",
    "saved_ms_per_request_avg": "Time saved per request if run concurrently (mean)",
    "hit_ratio": "Hit ratio",
    "hits": "Hits",
    "misses": "Misses",
    "lookups": "Lookups",
    "key_pattern": "Key pattern",
    "misses_per_request": "Misses per request",
    "recompute_ms_per_miss": "Recompute time per miss",
    "requests": "Requests",
    "threshold_ratio": "Threshold (hit ratio below)",
    "threshold_ms": "Threshold",
    "dominant": "Where most time goes",
    "dominant_count": "Spans of that kind per request",
    "dominant_pct": "Its share of the time",
    "error_rate": "Error rate",
    "p50_ms": "p50 latency",
    "p95_ms": "p95 latency",
    "p99_ms": "p99 latency",
    "p95_counts_avg": "Spans per slow (p95) request (mean)",
    "p95_split_ms": "Time split of slow (p95) requests",
    "p95_split_pct": "Share of the time of slow (p95) requests",
    "throughput_rpm": "Throughput",
    "baseline_median_ms": "Usual duration (median)",
    "baseline_samples": "Spans in the baseline",
    "category": "Category",
    "max_ms": "Slowest",
    "outliers_per_request_avg": "Slow spans per request (mean)",
    "connect_ms_avg": "Time to connect (mean)",
    "requests_connecting": "Requests that opened a connection",
    "example_url": "Example URL",
}
KIND_LABELS = {
    "connection_churn": {
        "ratio": "Requests that open a new connection",
        "threshold_ratio": "Threshold (above)",
    },
    "slow_query": {"threshold_ms": "Threshold (slower than)", "p95_ms": "p95 duration"},
    "slow_endpoint": {"threshold_ms": "Threshold (p95 above)"},
}
#: Words for booleans, per key; others read yes/no.
BOOL_WORDS = {"uselist": ("a collection (one-to-many)", "one related object (many-to-one)")}
#: Keys whose value is shown as code (SQL, keys, URLs).
CODE_KEYS = {
    "statement",
    "source_statement",
    "operation",
    "key_pattern",
    "relationship",
    "urls",
    "example_url",
}
#: Left out of the table: the statement is shown above it.
SKIP = {"statement", "db_statement", "query"}


def _ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def _unit(key: str) -> str:
    if re.search(r"(^|_)ms($|_)", key):
        return "ms"
    if key.endswith("_pct"):
        return "pct"
    if key.endswith("ratio") or key == "error_rate":
        return "ratio"
    if key.endswith("_rpm"):
        return "rpm"
    return ""


def format_value(key: str, value, unit: str | None = None) -> str:
    """One scalar as text with its unit (see the module docstring)."""
    unit = _unit(key) if unit is None else unit
    if isinstance(value, bool):
        words = BOOL_WORDS.get(key, ("yes", "no"))
        return words[0] if value else words[1]
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        if unit == "ms":
            return _ms(value)
        if unit == "pct":
            return f"{value:.1f} %"
        if unit == "ratio":
            return f"{100 * value:.1f} %"
        if unit == "rpm":
            return f"{value:g} requests/min"
        return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}".rstrip("0").rstrip(".")
    if key == "batched_query_estimate" and value == "slowest single repeat":
        return "the slowest of the repeated queries"
    return str(value)


def _label(kind: str, key: str) -> str:
    label = KIND_LABELS.get(kind, {}).get(key) or LABELS.get(key)
    if label:
        return label
    text = re.sub(r"_(ms|pct)\b", "", key).replace("_", " ")
    return text[:1].upper() + text[1:]


def evidence_rows(kind: str, evidence) -> list[dict]:
    """Rows for the evidence table: ``{"label", "text"}`` for a scalar, ``{"label", "table":
    [(name, text)]}`` for a dict, ``{"label", "entries": [text]}`` for a list; ``code`` says whether
    the text is code. Keys in ``SKIP`` are left out (the page shows the statement on its own)."""
    if not isinstance(evidence, dict):
        return []
    rows = []
    for key, value in evidence.items():
        if key in SKIP:
            continue
        row = {"label": _label(kind, key), "code": key in CODE_KEYS}
        unit = _unit(key)
        if isinstance(value, dict):
            row["table"] = [(str(k), format_value(str(k), v, unit)) for k, v in value.items()]
        elif isinstance(value, list):
            row["entries"] = [format_value(key, v, unit) for v in value]
        else:
            row["text"] = format_value(key, value, unit)
        rows.append(row)
    return rows
