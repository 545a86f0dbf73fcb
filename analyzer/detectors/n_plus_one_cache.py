"""``n_plus_one_cache``: one cache call per item of a loop instead of one ``get_many``.

Rule: within one trace and anchor (see :mod:`._repeats`), the same cache operation on the same
normalised key pattern (``GET book:{n}``) runs at least ``min_count`` times (default 5, Sentry's
N+1 count) taking at least ``min_total_ms`` (default 0: every round trip to a networked cache costs
latency however fast it looked here). Batched calls (``cache.get_many``) are one span, so never
flagged. Impact: total minus the slowest single call (the cost of one batched call).
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from ._repeats import repeat_detector

NAME = "n_plus_one_cache"
#: The spans this detector groups (see :func:`._repeats.build_anchors`).
CATEGORY = "cache"
KEY_FILTER = "true"
DEFAULTS = {"min_count": 5, "min_total_ms": 0.0}


detect, finish = repeat_detector(
    NAME, impact="c.total_ns - c.max_ns", keep="c.n >= g.min_count AND th_ms(c.total_ns) >= g.min_total_ms"
)


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated n_plus_one_cache finding."""
    avg_impact = f["impact_ms"] / max(f["occurrences"], 1)
    op = f["pattern"]  # the normalised operation
    return {
        "title": f"N+1 cache calls: '{op}' runs {f['avg_span_count']:.0f}x per request on "
        f"{f['endpoint'] or f['service']}",
        "evidence": {
            "operation": op,
            "calls_per_request_avg": round(f["avg_span_count"], 1),
            "calls_per_request_max": f["max_span_count"],
            "impact_ms_per_request_avg": round(avg_impact, 3),
        },
        "fix_hint": _hint(op.split(" ", 1)[0].lower(), f["where"]),
    }


def _hint(verb: str, where: str) -> str:
    """Batch-call advice matching the repeated operation (``get``, ``set``/``add``, ``delete``)."""
    if verb in ("set", "add", "setex"):
        return (
            f"Store all values in one round trip{where}: cache.set_many(mapping) (redis: MSET or a "
            f"pipeline) instead of one {verb} per item."
        )
    if verb == "delete":
        return f"Delete the keys in one round trip{where}: cache.delete_many(*keys) (redis: DEL k1 k2 ...)."
    return (
        f"Fetch all keys in one round trip{where}: cache.get_many(*keys) (redis: MGET or a pipeline) "
        f"instead of one call per item."
    )
