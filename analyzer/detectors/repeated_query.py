"""``repeated_query``: the same statement with the same parameters runs several times in one request.

Rule: within one trace (any parents), one normalised statement with one parameter set (identified by
``tracehound.db.params_hash``, or by the literal text of raw SQL) runs at least ``min_count`` times
(default 2: the second run is already redundant work that can be hoisted out of the loop or cached).
Statements whose parameters cannot be identified (placeholders but no params hash) are skipped,
except constant SELECTs without any parameter. Impact: every run after the first.
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from ._repeats import repeat_detector

NAME = "repeated_query"
#: The spans this detector groups (see :func:`._repeats.build_anchors`).
CATEGORY = "db"
KEY_FILTER = "NOT k.is_truncated AND k.norm <> ''"
#: parameters are known from the text itself only with literals, or for a constant SELECT
NEEDS_PARAMS = "NOT (k.has_literals OR (k.sql_op = 'SELECT' AND NOT contains(k.norm, '?')))"
DEFAULTS = {"min_count": 2}


# impact: every run after the first (the total minus the average run), as doubles like Python's
detect, finish = repeat_detector(
    NAME,
    impact="c.total_ns::DOUBLE - c.total_ns::DOUBLE / c.n::DOUBLE",
    keep="c.n >= g.min_count",
    per_params=True,
)


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated repeated_query finding."""
    avg_impact = f["impact_ms"] / max(f["occurrences"], 1)
    stmt = f["pattern"]  # the normalised statement
    return {
        "title": f"Same query with the same parameters runs {f['avg_span_count']:.0f}x per request "
        f"on {f['endpoint'] or f['service']}",
        "evidence": {
            "statement": stmt,
            "runs_per_request_avg": round(f["avg_span_count"], 1),
            "runs_per_request_max": f["max_span_count"],
            "impact_ms_per_request_avg": round(avg_impact, 3),
        },
        "fix_hint": f"Run it once and reuse the result{f['where']}: hoist it out of the loop, keep it in "
        f"a local variable, or memoise it for the request (flask.g).",
    }
