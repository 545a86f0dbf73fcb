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

from ._common import emit, emit_stats, hex_sid, mark_evaluated, ms

NAME = "cache_miss_ratio"
DEFAULTS = {"max_hit_ratio": 0.5, "min_lookups": 20}


def detect(cur, cfg) -> int:
    """Append cache-miss occurrences and statistics (window: the traces in ``th_traces``)."""
    # key pattern and verb computed once per distinct operation, not per span
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_cache AS
           SELECT s.tix, s.sid, s.start_ns, s.end_ns, s.dur_ns, s.cache_hit, s.code_h, k.key_pattern, k.op
           FROM th_spans s JOIN (
               SELECT key_h, regexp_replace(norm, '^\\S+\\s+', '') AS key_pattern,
                      lower(regexp_extract(norm, '^(\\S+)', 1)) AS op
               FROM th_keys WHERE cat = 'cache') k ON k.key_h = s.key_h
           WHERE s.cat = 'cache'"""
    )
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE th_miss AS
            SELECT m.tix, m.key_pattern, m.sid, m.dur_ns, m.code_h,
                   coalesce(min(w.start_ns) - m.end_ns, any_value(t.start_ns + t.duration_ns) - m.end_ns, 0)
                       AS recompute_ns, {hex_sid("m.sid")} AS sid_hex
            FROM th_cache m JOIN th_traces t ON t.tix = m.tix
            LEFT JOIN th_cache w ON w.tix = m.tix AND w.key_pattern = m.key_pattern
                 AND w.op IN ('set', 'add', 'setex', 'set_many') AND w.start_ns >= m.end_ns
            WHERE m.cache_hit = false GROUP BY m.tix, m.key_pattern, m.sid, m.dur_ns, m.end_ns, m.code_h"""
    )
    groups = cur.execute(
        """SELECT t.service, t.endpoint, c.key_pattern, count(*) AS lookups,
                  count(*) FILTER (WHERE c.cache_hit) AS hits, count(DISTINCT c.tix) AS requests
           FROM th_cache c JOIN th_traces t ON t.tix = c.tix WHERE c.cache_hit IS NOT NULL
           GROUP BY ALL"""
    ).fetchall()
    out, evaluated = [], []
    for service, endpoint, key, lookups, hits, requests in groups:
        c = cfg.get(NAME, service, endpoint)
        ratio = hits / lookups
        if not c["enabled"] or lookups < c["min_lookups"]:
            continue
        evaluated.append((service, endpoint, key))
        if ratio > c["max_hit_ratio"]:
            continue
        rows = cur.execute(
            """SELECT m.tix, count(*), sum(m.dur_ns), sum(greatest(m.recompute_ns, 0)), list(m.sid_hex),
                      mode(m.code_h)
               FROM th_miss m JOIN th_traces t ON t.tix = m.tix
               WHERE t.service = ? AND t.endpoint = ? AND m.key_pattern = ? GROUP BY m.tix""",
            [service, endpoint, key],
        ).fetchall()
        recompute = sum(r[3] for r in rows)
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
                "hit_ratio": round(ratio, 4),
                "requests": requests,
                "misses_per_request": round((lookups - hits) / max(requests, 1), 3),
                "recompute_ms_per_miss": ms(recompute / max(lookups - hits, 1)),
                "threshold_ratio": c["max_hit_ratio"],
            },
        )
        out.extend(
            {
                "kind": NAME,
                "service": service,
                "endpoint": endpoint,
                "pattern": key,
                "tix": tix,
                "impact_ms": ms(miss_ns + rec_ns),
                "span_count": n,
                "duration_ms": ms(miss_ns + rec_ns),
                "span_ids": sids,
                "code_h": code_h,
                "detail": {"key_pattern": key},
            }
            for tix, n, miss_ns, rec_ns, sids, code_h in rows
        )
    mark_evaluated(cur, NAME, evaluated)
    return emit(cur, out)


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
