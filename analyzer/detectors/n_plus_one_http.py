"""``n_plus_one_http``: one outbound HTTP call per item of a loop.

Rule: within one trace and anchor (see :mod:`._repeats`), outbound calls to the same normalised URL
(``GET api.example.com/users/{n}``: numeric, UUID and hex path segments are placeholders, the query
string dropped) run at least ``min_count`` times (default 5) taking at least ``min_total_ms`` in total
(default 300 ms); both are Sentry's N+1 API defaults. Unlike Sentry we also flag sequential loops
(Sentry wants the calls to start within 15 ms of each other, the browser fan-out pattern; a Flask
handler calling an API in a for-loop is the server-side N+1 we are after).
Impact: total minus the slowest single call (the cost of one batched call).
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from ._repeats import repeat_detector

NAME = "n_plus_one_http"
#: The spans this detector groups (see :func:`._repeats.build_anchors`).
CATEGORY = "http"
KEY_FILTER = "true"
DEFAULTS = {"min_count": 5, "min_total_ms": 300.0}


detect, finish = repeat_detector(
    NAME, impact="c.total_ns - c.max_ns", keep="c.n >= g.min_count AND th_ms(c.total_ns) >= g.min_total_ms"
)


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated n_plus_one_http finding."""
    avg_impact = f["impact_ms"] / max(f["occurrences"], 1)
    url = f["pattern"]  # the normalised URL
    return {
        "title": f"N+1 HTTP calls: '{url}' called {f['avg_span_count']:.0f}x per request on "
        f"{f['endpoint'] or f['service']}",
        "evidence": {
            "url": url,
            "calls_per_request_avg": round(f["avg_span_count"], 1),
            "calls_per_request_max": f["max_span_count"],
            "total_ms_per_request_avg": round(f["avg_duration_ms"], 3),
            "impact_ms_per_request_avg": round(avg_impact, 3),
        },
        "fix_hint": f"Use a batch endpoint (one request for all ids){f['where']}, or run the calls "
        f"concurrently (a thread pool / httpx.AsyncClient) and cache the responses.",
    }
