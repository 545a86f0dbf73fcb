"""Per-trace summaries (``trace_summaries``) with an exclusive-time breakdown.

Exclusive ("self") time of a span = its duration minus the time covered by the UNION of its
children's intervals, each clipped to the parent's interval. Overlapping (parallel) children are
therefore counted once: two 100 ms queries running side by side under a 150 ms handler cover
100-150 ms of it, not 200 ms. The union is computed in one ordered pass over the children of each
parent: sorted by start, each child adds only what lies beyond the latest end before it.

A trace's ``db_ns`` / ``cache_ns`` / ``http_ns`` / ``template_ns`` are the sums of the exclusive time
of its spans in that category (``connect`` spans count as db); ``self_ns`` is the exclusive time of
everything else (the server span and internal spans: the application's own code). The parts add up
to the root's duration when every span nests inside the root. Counts are span counts; cache hits and
misses come from ``cache.hit``.
"""

from __future__ import annotations

EXCLUSIVE_SQL = """
CREATE OR REPLACE TEMP TABLE th_excl AS
WITH ch AS (
    SELECT c.ppk, greatest(c.start_ns, p.start_ns) AS s, least(c.end_ns, p.end_ns) AS e
    FROM th_spans c JOIN th_spans p ON c.ppk = p.pk
    WHERE c.end_ns > p.start_ns AND c.start_ns < p.end_ns
),
w AS (
    SELECT ppk, s, e, max(e) OVER (PARTITION BY ppk ORDER BY s, e
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
    FROM ch
),
covered AS (
    -- Union length of intervals sorted by start: each adds what lies beyond every earlier end.
    SELECT ppk, sum(greatest(e - greatest(s, coalesce(prev_e, s)), 0)) AS covered_ns
    FROM w GROUP BY ppk
)
SELECT sp.tix, sp.cat, greatest(sp.dur_ns - coalesce(cv.covered_ns, 0), 0) AS excl_ns
FROM th_spans sp LEFT JOIN covered cv ON cv.ppk = sp.pk
"""

SUMMARY_SQL = """
CREATE OR REPLACE TEMP TABLE th_summary AS
SELECT t.tix, t.trace_id, t.service, t.endpoint, t.http_method, t.http_status_code, t.ts AS start,
       t.duration_ns, t.is_error,
       coalesce(a.span_count, 0) AS span_count, coalesce(a.db_count, 0) AS db_count,
       coalesce(x.db_ns, 0) AS db_ns, coalesce(a.cache_count, 0) AS cache_count,
       coalesce(a.cache_hits, 0) AS cache_hits, coalesce(a.cache_misses, 0) AS cache_misses,
       coalesce(x.cache_ns, 0) AS cache_ns, coalesce(a.http_count, 0) AS http_count,
       coalesce(x.http_ns, 0) AS http_ns, coalesce(x.template_ns, 0) AS template_ns,
       coalesce(x.self_ns, 0) AS self_ns
FROM th_traces t
LEFT JOIN (
    SELECT tix, count(*)::INTEGER AS span_count,
           count(*) FILTER (WHERE cat = 'db')::INTEGER AS db_count,
           count(*) FILTER (WHERE cat = 'cache')::INTEGER AS cache_count,
           count(*) FILTER (WHERE cat = 'cache' AND cache_hit)::INTEGER AS cache_hits,
           count(*) FILTER (WHERE cat = 'cache' AND NOT cache_hit)::INTEGER AS cache_misses,
           count(*) FILTER (WHERE cat = 'http')::INTEGER AS http_count
    FROM th_spans GROUP BY tix
) a ON a.tix = t.tix
LEFT JOIN (
    SELECT tix,
           sum(excl_ns) FILTER (WHERE cat IN ('db', 'connect'))::BIGINT AS db_ns,
           sum(excl_ns) FILTER (WHERE cat = 'cache')::BIGINT AS cache_ns,
           sum(excl_ns) FILTER (WHERE cat = 'http')::BIGINT AS http_ns,
           sum(excl_ns) FILTER (WHERE cat = 'template')::BIGINT AS template_ns,
           sum(excl_ns) FILTER (WHERE cat IN ('server', 'other'))::BIGINT AS self_ns
    FROM th_excl GROUP BY tix
) x ON x.tix = t.tix
"""


def build_summaries(cur) -> None:
    """Compute ``th_summary`` (``tix`` + the ``trace_summaries`` columns) for the traces in ``th_traces``."""
    cur.execute(EXCLUSIVE_SQL)
    cur.execute(SUMMARY_SQL)


def summaries_from_store(cur) -> None:
    """``th_summary`` read back from ``trace_summaries`` for the traces in ``th_traces`` (traces not
    analysed yet are absent). Used by the worker's windowed re-runs: no exclusive-time pass."""
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_summary AS
           SELECT t.tix, s.* FROM trace_summaries s JOIN th_traces t ON t.trace_id = s.trace_id"""
    )


def write_trace_summaries(cur) -> None:
    """Replace the ``trace_summaries`` rows of the traces in ``th_traces`` with ``th_summary``."""
    cur.execute("DELETE FROM trace_summaries WHERE trace_id IN (SELECT trace_id FROM th_traces)")
    cur.execute("INSERT INTO trace_summaries SELECT * EXCLUDE (tix) FROM th_summary")
