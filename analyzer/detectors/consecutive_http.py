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

from collections import Counter

from ._common import emit, hex_sid, ms

NAME = "consecutive_http"
DEFAULTS = {
    "min_count": 3,
    "min_span_ms": 500.0,
    "max_gap_ms": 500.0,
    "min_saved_ms": 2000.0,
}


def detect(cur, cfg) -> int:
    """Append consecutive-HTTP occurrences of the traces in ``th_traces`` to ``th_occ``."""
    min_span_ns = int(cfg.loosest(NAME, "min_span_ms") * 1e6)
    rows = cur.execute(
        f"""SELECT t.service, t.endpoint, s.tix, s.start_ns, s.end_ns, s.dur_ns, k.norm, {hex_sid("s.sid")},
                   s.code_h, c.filepath || ':' || c.lineno
            FROM th_spans s JOIN th_keys k ON k.key_h = s.key_h JOIN th_traces t ON t.tix = s.tix
            LEFT JOIN th_code c ON c.code_h = s.code_h
            WHERE s.cat = 'http' AND s.dur_ns >= ? ORDER BY s.tix, s.start_ns, s.end_ns""",
        [min_span_ns],
    ).fetchall()
    out: list[dict] = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][2] == rows[i][2]:
            j += 1
        out.extend(_runs(rows[i:j], cfg))
        i = j
    return emit(cur, out)


def _runs(spans, cfg) -> list[dict]:
    service, endpoint = spans[0][0], spans[0][1]
    c = cfg.get(NAME, service, endpoint)
    if not c["enabled"]:
        return []
    eligible = [s for s in spans if s[5] >= c["min_span_ms"] * 1e6]
    runs, current = [], []
    for s in eligible:
        if current and (s[3] < current[-1][4] or s[3] - current[-1][4] >= c["max_gap_ms"] * 1e6):
            runs.append(current)
            current = []
        current.append(s)
    runs.append(current)
    out = []
    for run in runs:
        if len(run) < c["min_count"]:
            continue
        total = sum(s[5] for s in run)
        saved = total - max(s[5] for s in run)
        if ms(saved) < c["min_saved_ms"]:
            continue
        urls = sorted({s[6] for s in run})
        hosts = sorted({_host(u) for u in urls})
        codes = [s[8] for s in run if s[8] is not None]
        locs = [s[9] for s in run if s[9]]
        # most common; a tie goes to the location called first in the run (deterministic: the
        # location is part of the finding's identity, so it must not depend on string hashing)
        loc = Counter(locs).most_common(1)[0][0] if locs else "-"
        out.append(
            {
                "kind": NAME,
                "service": service,
                "endpoint": endpoint,
                "pattern": f"{loc} -> {' | '.join(hosts)}",
                "tix": run[0][2],
                "impact_ms": ms(saved),
                "span_count": len(run),
                "duration_ms": ms(total),
                "span_ids": [s[7] for s in run],
                "code_h": Counter(codes).most_common(1)[0][0] if codes else None,
                "detail": {"urls": urls, "hosts": hosts},
            }
        )
    return out


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
