"""``cache_miss_ratio``: a cache that misses most of the time.

Per (service, route, key pattern) over the analysed window, for lookups (cache spans carrying
``cache.hit``): hit ratio, misses per request, and the recompute time after a miss: from the end of
the miss to the start of the next ``set``/``add`` of the same key pattern in the same trace (the
time the app spent rebuilding the value), or to the end of the request if nothing was stored.
Flagged when the hit ratio is <= ``max_hit_ratio`` (default 0.5: below it the cache costs a round
trip on most requests and saves little) over at least ``min_lookups`` (default 20: fewer lookups
say nothing about a ratio). Occurrences: the requests with a miss; impact: miss latency + recompute.
Severity: the common rule (:func:`tracehound.analyzer.findings.severity_for`) on the miss +
recompute time.
"""

from __future__ import annotations

from ._common import emit_stats, flag_groups, mark_evaluated, ms, route_keys

NAME = "cache_miss_ratio"
DEFAULTS = {"max_hit_ratio": 0.5, "min_lookups": 20}


def detect(cur, cfg) -> int:
    """Append cache-miss occurrences and statistics (window: the traces in ``th_traces``)."""
    # key pattern and verb computed once per distinct operation, not per span; each span's route as
    # its trace's route key (th_trace_rk holds the pass's traces only: its join selects them)
    route_keys(cur)
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_cache AS
           SELECT s.tix, r.rk, s.sid, s.start_ns, s.end_ns, s.dur_ns, s.cache_hit, s.code_h, k.key_pattern, k.op
           FROM th_facts s JOIN th_trace_rk r ON r.tix = s.tix JOIN (
               SELECT key_h, regexp_replace(norm, '^\\S+\\s+', '') AS key_pattern,
                      lower(regexp_extract(norm, '^(\\S+)', 1)) AS op
               FROM th_keys WHERE cat = 'cache') k ON k.key_h = s.key_h
           WHERE s.cat = 'cache'"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_miss AS
           SELECT m.tix, m.rk, m.key_pattern, m.sid, m.dur_ns, m.code_h,
                  coalesce(min(w.start_ns) - m.end_ns, any_value(t.start_ns + t.duration_ns) - m.end_ns, 0)
                      AS recompute_ns
           FROM th_cache m JOIN th_traces t ON t.tix = m.tix
           LEFT JOIN th_cache w ON w.tix = m.tix AND w.key_pattern = m.key_pattern
                AND w.op IN ('set', 'add', 'setex', 'set_many') AND w.start_ns >= m.end_ns
           WHERE m.cache_hit = false GROUP BY m.tix, m.rk, m.key_pattern, m.sid, m.dur_ns, m.end_ns, m.code_h"""
    )
    # per request first, then per group: the requests are counted without a DISTINCT
    groups = cur.execute(
        """SELECT r.service, r.endpoint, g.key_pattern, g.lookups, g.hits, g.requests
           FROM (SELECT rk, key_pattern, sum(n)::BIGINT AS lookups, sum(hits)::BIGINT AS hits,
                        count(*) AS requests
                 FROM (SELECT rk, key_pattern, tix, count(*) AS n, count(*) FILTER (WHERE cache_hit) AS hits
                       FROM th_cache WHERE cache_hit IS NOT NULL GROUP BY ALL)
                 GROUP BY ALL) g
           JOIN th_routes r ON r.rk = g.rk"""
    ).fetchall()
    flagged, evaluated = {}, []
    for service, endpoint, key, lookups, hits, requests in groups:
        c = cfg.get(NAME, service, endpoint)
        if not c["enabled"] or lookups < c["min_lookups"]:
            continue
        evaluated.append((service, endpoint, key))
        if hits / lookups <= c["max_hit_ratio"]:
            flagged[service, endpoint, key] = (lookups, hits, requests, c["max_hit_ratio"])
    mark_evaluated(cur, NAME, evaluated)
    flag_groups(cur, list(flagged))
    # the flagged groups' misses per request (miss latency + recompute time), computed once: they
    # become the occurrences, and their recompute time the groups' statistics
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_miss_req AS
           SELECT t.service, t.endpoint, m.key_pattern, m.tix, count(*) AS n, sum(m.dur_ns) AS miss_ns,
                  sum(greatest(m.recompute_ns, 0)) AS recompute_ns, mode(m.code_h) AS code_h,
                  list_sort(list(m.sid)) AS sids
           FROM th_miss m JOIN th_routes t ON t.rk = m.rk
           JOIN th_flag f ON f.service = t.service AND f.endpoint = t.endpoint AND f.pattern = m.key_pattern
           GROUP BY t.service, t.endpoint, m.key_pattern, m.tix"""
    )
    n = cur.execute(
        f"""INSERT INTO th_occ BY NAME
            SELECT '{NAME}' AS kind, service, endpoint, key_pattern AS pattern, tix,
                   th_ms(miss_ns + recompute_ns) AS impact_ms, n AS span_count,
                   th_ms(miss_ns + recompute_ns) AS duration_ms, code_h,
                   to_json({{'key_pattern': key_pattern}})::VARCHAR AS detail, sids
            FROM th_miss_req"""
    ).fetchall()[0][0]
    recompute = cur.execute(
        "SELECT service, endpoint, key_pattern, sum(recompute_ns) FROM th_miss_req GROUP BY ALL"
    ).fetchall()
    recompute = {(r[0], r[1], r[2]): r[3] for r in recompute}
    for (service, endpoint, key), (lookups, hits, requests, threshold) in flagged.items():
        emit_stats(
            cur,
            NAME,
            service,
            endpoint,
            key,
            {
                "key_pattern": key,
                "lookups": lookups,
                "hits": hits,
                "misses": lookups - hits,
                "hit_ratio": round(hits / lookups, 4),
                "requests": requests,
                "misses_per_request": round((lookups - hits) / max(requests, 1), 3),
                "recompute_ms_per_miss": ms(
                    recompute.get((service, endpoint, key), 0) / max(lookups - hits, 1)
                ),
                "threshold_ratio": threshold,
            },
        )
    return n


def describe(f: dict, c: dict) -> dict:
    """Title, severity, evidence and fix hint of an aggregated cache_miss_ratio finding."""
    st = f["stats"] or {"hit_ratio": 0.0, "key_pattern": f["pattern"]}
    return {
        "title": f"Cache '{st['key_pattern']}' hits only {100 * st['hit_ratio']:.0f}% on "
        f"{f['endpoint'] or f['service']}",
        "evidence": st,
        "fix_hint": f"Check the key and timeout{f['where']}: keys that embed volatile values (timestamps, "
        f"session ids) never repeat, a short timeout expires entries before reuse, and a value "
        f"set under a different key than it is read never hits. Warm the cache or raise the timeout.",
    }
