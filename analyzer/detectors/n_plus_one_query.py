"""``n_plus_one_query``: the same SQL statement run once per row of an earlier result.

Rule: within one trace and under one anchor (the parent span, or the span holding the loop; see
:mod:`._repeats`), one normalised statement runs with at least ``min_count`` distinct parameter sets
and takes at least ``min_total_ms`` in total. Defaults 5 and 50 ms are Sentry's
(``n_plus_one_db_count``, ``n_plus_one_db_duration_threshold``). Below the time threshold a run of at
least ``low_severity_min_count`` (default 20, our choice: 4x Sentry's count) is still reported at low
severity: a fast local database hides what a networked one will cost (20 round trips x 1 ms RTT).

Not flagged: batched ``IN (a, b, ...)`` queries (selectinload), statements truncated by the client
(``...``: they cannot be grouped safely, as in Sentry), "statements" without a space (``pg-pool.connect``,
MongoDB/Prisma operation names: not a query text; Sentry's rule), a loop of *different* statements, and
repeats of the same parameters (that is ``repeated_query``). Redis/memcached spans are cache spans.

Source query: the last DB span with a different statement that started before the first repeat
under the same parent (Sentry's "cause" span). Impact per occurrence: the repeats' total time minus
the estimated cost of one batched query, estimated as the slowest single repeat (one IN query does
one round trip; its per-row work is about one repeat's). Severity: the common rule
(:func:`tracehound.analyzer.findings.severity_for`), capped at ``low`` for a finding flagged only by
count (no occurrence reached ``min_total_ms``).

Nested N+1 (a loop inside a loop): when the source span is itself an ORM lazy load (e.g. each
``Book.reviews`` run follows an ``Author.books`` lazy load), the evidence names it (``nested_in``) and
the fix hint is the chained loader on the OUTER query
(``selectinload(Author.books).selectinload(Book.reviews)``); the code location is "the loop at ...".
"""

from __future__ import annotations

from ._repeats import repeat_detector

NAME = "n_plus_one_query"
#: The spans this detector groups (see :func:`._repeats.build_anchors`).
CATEGORY = "db"
KEY_FILTER = "NOT k.is_batch AND NOT k.is_truncated AND contains(k.norm, ' ')"
DEFAULTS = {"min_count": 5, "min_total_ms": 50.0, "low_severity_min_count": 20}


_BELOW = "th_ms(c.total_ns) < g.min_total_ms"
detect, finish = repeat_detector(
    NAME,
    impact="c.total_ns - c.max_ns",
    keep=f"c.n_distinct >= g.min_count AND NOT ({_BELOW} AND c.n_distinct < g.low_severity_min_count)",
    detail=f"""{{'distinct_params': c.n_distinct, 'relationship': c.orm_rel,
                'uselist': c.orm_uselist, 'source_statement': c.source_norm,
                'source_span_id': c.source_sid,
                -- the source query is itself a lazy load (runs once per outer row): a nested N+1
                'nested_in': CASE WHEN c.orm_rel <> '' THEN c.source_rel END,
                'nested_in_uselist': c.source_uselist, 'below_time_threshold': {_BELOW},
                'loop_wall_ms': th_ms(c.last_end - c.first_start)}}""",
    with_source=True,
)


def fix_hint(
    rel: str | None,
    uselist: bool | None,
    where: str,
    outer_rel: str | None = None,
    outer_uselist: bool | None = None,
) -> str:
    """Concrete eager-loading advice naming the relationship when the instrumentation gave it.

    ``where`` (" at file:line in fn()") is where the lazy load fires: the LOOP body, not the query
    that loaded the parent rows. ``outer_rel``: the relationship whose lazy load produced the parent
    rows (a nested N+1: a loop inside a loop): the fix is then one chained loader on the outer query,
    e.g. ``selectinload(Author.books).selectinload(Book.reviews)``.
    """
    loop = f" (the lazy load fires in the loop{where})" if where else ""
    if rel and outer_rel:
        outer = "selectinload" if outer_uselist or outer_uselist is None else "joinedload"
        inner = "selectinload" if uselist else "joinedload"
        owner = outer_rel.split(".")[0]
        return (
            f"Nested N+1: {rel} is lazy-loaded for every row that the lazy load of {outer_rel} returned. "
            f"Eager-load both levels on the outer query that loads the {owner} rows: "
            f".options({outer}({outer_rel}).{inner}({rel})); then the loop{where} runs no queries."
        )
    if rel:
        if uselist:
            return (
                f"Eager-load the collection: add .options(selectinload({rel})) to the query that "
                f"loads the parent rows{loop}, so all {rel.split('.')[-1]} come in one IN query."
            )
        return (
            f"Eager-load the related row: add .options(joinedload({rel})) (or selectinload) to the "
            f"query that loads the parent rows{loop}, so it is fetched with them in one query."
        )
    return (
        f"Fetch the rows in one query before the loop{where}: collect the ids and run one "
        f"'... WHERE id IN (...)' query (or eager-load the relationship in the ORM)."
    )


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated n_plus_one_query finding."""
    d = f["detail"]
    avg_n = f["avg_span_count"]
    avg_impact = f["impact_ms"] / max(f["occurrences"], 1)
    # count-only: no occurrence reached the time threshold; capped at low by the common rule
    count_only = bool(d.get("below_time_threshold")) and f["max_duration_ms"] < c["min_total_ms"]
    rel = d.get("relationship")
    what = f"lazy load of {rel}" if rel else f"'{_short(f['pattern'])}'"
    return {
        "title": f"N+1 query: {what} runs {avg_n:.0f}x per request on {f['endpoint'] or f['service']}",
        "evidence": {
            "statement": f["pattern"],
            "source_statement": d.get("source_statement"),
            "relationship": rel,
            "uselist": d.get("uselist"),
            **({"nested_in": d["nested_in"]} if d.get("nested_in") else {}),
            "queries_per_request_avg": round(avg_n, 1),
            "queries_per_request_max": f["max_span_count"],
            "repeated_ms_avg": round(f["avg_duration_ms"], 3),
            # wall time of the loop (first repeat start -> last repeat end) in the latest occurrence:
            # its excess over repeated_ms is ORM/app work between the queries (the loop's "self time")
            "loop_wall_ms": d.get("loop_wall_ms"),
            "impact_ms_per_request_avg": round(avg_impact, 3),
            "batched_query_estimate": "slowest single repeat",
            "below_time_threshold": count_only,
        },
        "max_severity": "low" if count_only else None,
        "fix_hint": fix_hint(
            rel, d.get("uselist"), f["where"], d.get("nested_in"), d.get("nested_in_uselist")
        ),
    }


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
