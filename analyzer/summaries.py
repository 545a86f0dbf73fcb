"""Per-trace summaries (``trace_summaries``) with an exclusive-time breakdown.

Exclusive ("self") time of a span = its duration minus the time covered by the UNION of its
children's intervals, each clipped to the parent's interval. Overlapping (parallel) children are
therefore counted once: two 100 ms queries running side by side under a 150 ms handler cover
100-150 ms of it, not 200 ms. The union is computed with a gaps-and-islands pass over the children
of each parent, ordered by start.

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
    SELECT c.tix, c.pid, greatest(c.start_ns, p.start_ns) AS s, least(c.end_ns, p.end_ns) AS e
    FROM th_spans c JOIN th_spans p ON c.tix = p.tix AND c.pid = p.sid
    WHERE c.pid <> 0 AND c.end_ns > p.start_ns AND c.start_ns < p.end_ns
),
w AS (
    SELECT *, max(e) OVER (PARTITION BY tix, pid ORDER BY s, e
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
    FROM ch
),
g AS (
    SELECT *, sum(CASE WHEN prev_e IS NULL OR s > prev_e THEN 1 ELSE 0 END)
              OVER (PARTITION BY tix, pid ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS island
    FROM w
),
covered AS (
    SELECT tix, pid, sum(ie - is_) AS covered_ns
    FROM (SELECT tix, pid, island, min(s) AS is_, max(e) AS ie FROM g GROUP BY tix, pid, island)
    GROUP BY tix, pid
)
SELECT sp.tix, sp.sid, sp.cat, greatest(sp.dur_ns - coalesce(cv.covered_ns, 0), 0) AS excl_ns
FROM th_spans sp LEFT JOIN covered cv ON cv.tix = sp.tix AND cv.pid = sp.sid
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


def write_trace_summaries(cur) -> None:
    """Replace the ``trace_summaries`` rows of the traces in ``th_traces`` with ``th_summary``."""
    cur.execute("DELETE FROM trace_summaries WHERE trace_id IN (SELECT trace_id FROM th_traces)")
    cur.execute("INSERT INTO trace_summaries SELECT * EXCLUDE (tix) FROM th_summary")
