"""``repeated_query``: the same statement with the same parameters runs several times in one request.

Rule: within one trace (any parents), one normalised statement with one parameter set (identified by
``tracehound.db.params_hash``, or by the literal text of raw SQL) runs at least ``min_count`` times
(default 2: the second run is already redundant work that can be hoisted out of the loop or cached).
Statements whose parameters cannot be identified (placeholders but no params hash) are skipped,
except constant SELECTs without any parameter. Impact: every run after the first.
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from ._common import emit
from ._repeats import find_repeats, occurrence

NAME = "repeated_query"
DEFAULTS = {"min_count": 2}


def detect(cur, cfg) -> int:
    """Append repeated-query occurrences of the traces in ``th_traces`` to ``th_occ``."""
    rows = find_repeats(
        cur,
        "db",
        cfg.loosest(NAME, "min_count"),
        per_params=True,
        where="""AND NOT k.is_truncated AND k.norm <> '' AND (s.params_h IS NOT NULL OR k.has_literals
                 OR (k.sql_op = 'SELECT' AND NOT contains(k.norm, '?')))""",
    )
    out = []
    for r in rows:
        c = cfg.get(NAME, r["service"], r["endpoint"])
        if not c["enabled"] or r["n"] < c["min_count"]:
            continue
        avg = r["total_ns"] / r["n"]
        out.append(occurrence(NAME, r, r["total_ns"] - avg, {"statement": r["norm"]}))
    return emit(cur, out)


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated repeated_query finding."""
    avg_impact = f["impact_ms"] / max(f["occurrences"], 1)
    stmt = f["detail"]["statement"]
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
