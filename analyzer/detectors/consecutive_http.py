"""``consecutive_http``: slow outbound calls made one after another, which could run concurrently.

Rule (Sentry's consecutive HTTP detector and defaults): in one trace, take the outbound HTTP spans
of at least ``min_span_ms`` (500 ms) each, by start time (shorter calls are skipped, they neither
count nor break a run; other kinds of spans in between do not matter either). A run continues while
each call starts after the previous one ended (overlapping calls already run concurrently: they
break the run) and less than ``max_gap_ms`` (500 ms) later. A run of at least ``min_count`` (3)
calls is flagged when running them concurrently would save at least ``min_saved_ms`` (2000 ms):
saved = sum of the durations minus the longest one. That saving is the occurrence's impact.
Pattern (identity of the finding): the run's most common code location plus the sorted set of the
hosts it calls (not the exact URLs: when one call of a run dips under ``min_span_ms`` on some
request, the rest of the run is still the same problem and stays one finding). The normalised URL
patterns of the latest run are kept as evidence.
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`).
"""

from __future__ import annotations

from ._common import config_table

NAME = "consecutive_http"
DEFAULTS = {
    "min_count": 3,
    "min_span_ms": 500.0,
    "max_gap_ms": 500.0,
    "min_saved_ms": 2000.0,
}

#: The runs, in SQL over the few eligible spans (``th_chttp``, their route's thresholds joined):
#: ``pos`` orders a trace's calls by (start, end); a call opens a new run when it starts before the
#: previous call ended or ``max_gap_ms`` or more after; ``run`` numbers them (a running sum).
_RUNS_SQL = """
CREATE OR REPLACE TEMP TABLE th_crun AS
WITH o AS (
    SELECT *, row_number() OVER w AS pos, lag(end_ns) OVER w AS prev_end
    FROM th_chttp WINDOW w AS (PARTITION BY tix ORDER BY start_ns, end_ns, sid)
),
r AS (
    SELECT *, sum((prev_end IS NOT NULL AND (start_ns < prev_end OR start_ns - prev_end >= max_gap_ms * 1e6))::INTEGER)
                  OVER (PARTITION BY tix ORDER BY pos ROWS UNBOUNDED PRECEDING) AS run
    FROM o
)
SELECT * FROM r SEMI JOIN (
    SELECT tix, run FROM r GROUP BY tix, run
    HAVING count(*) >= any_value(min_count) AND th_ms(sum(dur_ns) - max(dur_ns)) >= any_value(min_saved_ms)
) USING (tix, run)
"""

#: One occurrence per flagged run. Pattern: the run's most common code location (a tie goes to the
#: location called first in the run: the pattern is part of the finding's identity, so it must be
#: deterministic) and its sorted hosts; ``code_h`` likewise.
_EMIT_SQL = f"""
INSERT INTO th_occ BY NAME
WITH runs AS (
    SELECT tix, run, any_value(service) AS service, any_value(endpoint) AS endpoint, count(*) AS n,
           sum(dur_ns) AS total_ns, max(dur_ns) AS max_ns, list(sid ORDER BY pos) AS sids,
           list_sort(list_distinct(list(norm))) AS urls, list_sort(list_distinct(list(h.host))) AS hosts
    FROM th_crun JOIN th_http_host h USING (norm) GROUP BY tix, run
),
locs AS (
    SELECT tix, run, first(loc ORDER BY n DESC, first_pos) AS loc FROM (
        SELECT tix, run, loc, count(*) AS n, min(pos) AS first_pos FROM th_crun
        WHERE loc IS NOT NULL AND loc <> '' GROUP BY ALL) GROUP BY tix, run
),
codes AS (
    SELECT tix, run, first(code_h ORDER BY n DESC, first_pos) AS code_h FROM (
        SELECT tix, run, code_h, count(*) AS n, min(pos) AS first_pos FROM th_crun
        WHERE code_h IS NOT NULL GROUP BY ALL) GROUP BY tix, run
)
SELECT '{NAME}' AS kind, r.service, r.endpoint,
       coalesce(l.loc, '-') || ' -> ' || array_to_string(r.hosts, ' | ') AS pattern, r.tix,
       th_ms(r.total_ns - r.max_ns) AS impact_ms, r.n AS span_count, th_ms(r.total_ns) AS duration_ms,
       c.code_h, to_json({{'hosts': r.hosts, 'urls': r.urls}})::VARCHAR AS detail, r.sids
FROM runs r LEFT JOIN locs l USING (tix, run) LEFT JOIN codes c USING (tix, run)
"""


def detect(cur, cfg) -> int:
    """Append consecutive-HTTP occurrences of the traces in ``th_traces`` to ``th_occ``."""
    config_table(cur, cfg, NAME)
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_chttp AS
           SELECT t.service, t.endpoint, s.tix, s.sid, s.start_ns, s.end_ns, s.dur_ns, s.code_h, k.norm,
                  c.filepath || ':' || c.lineno AS loc, g.max_gap_ms, g.min_count, g.min_saved_ms
           FROM th_spans s JOIN th_traces t ON t.tix = s.tix
           JOIN th_cfg g ON g.service = t.service AND g.endpoint = t.endpoint
           JOIN th_keys k ON k.key_h = s.key_h LEFT JOIN th_code c ON c.code_h = s.code_h
           WHERE s.cat = 'http' AND s.dur_ns >= ? AND g.enabled AND s.dur_ns >= g.min_span_ms * 1e6""",
        [int(cfg.loosest(NAME, "min_span_ms") * 1e6)],
    )
    cur.execute(_RUNS_SQL)
    # the host of each URL pattern of a flagged run (a few distinct patterns), by _host()
    norms = [r[0] for r in cur.execute("SELECT DISTINCT norm FROM th_crun").fetchall()]
    cur.execute("CREATE OR REPLACE TEMP TABLE th_http_host (norm VARCHAR, host VARCHAR)")
    if norms:
        cur.executemany("INSERT INTO th_http_host VALUES (?, ?)", [(n, _host(n)) for n in norms])
    n = cur.execute(_EMIT_SQL).fetchall()[0][0]
    for table in ("th_chttp", "th_crun", "th_http_host"):
        cur.execute(f"DROP TABLE {table}")
    return n


def _host(url_pattern: str) -> str:
    """``'GET api.x.io/v1/{n}'`` (a normalised URL, scheme optional) -> ``'api.x.io'``."""
    url = url_pattern.split()[-1] if url_pattern.strip() else url_pattern
    return url.split("://", 1)[-1].split("/", 1)[0] or url_pattern


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated consecutive_http finding."""
    avg_saved = f["impact_ms"] / max(f["occurrences"], 1)
    urls = f["detail"]["urls"]
    return {
        "title": f"{f['avg_span_count']:.0f} slow HTTP calls in a row on {f['endpoint'] or f['service']} "
        f"(could save {avg_saved:.0f} ms per request)",
        "evidence": {
            "hosts": f["detail"].get("hosts"),
            "urls": urls,
            "calls_per_request_avg": round(f["avg_span_count"], 1),
            "sequential_ms_avg": round(f["avg_duration_ms"], 3),
            "saved_ms_per_request_avg": round(avg_saved, 3),
        },
        "fix_hint": f"Run these calls concurrently{f['where']} (concurrent.futures.ThreadPoolExecutor or "
        f"httpx.AsyncClient with asyncio.gather), or move them to a background job and cache "
        f"the results.",
    }
