"""Turning occurrences (``th_occ``) into ``finding_occurrences`` rows and merged ``findings``.

Identity: ``fingerprint = sha256(kind, service, endpoint, pattern)`` (joined by U+001F, same as
:func:`tracehound.analyzer.normalize.fingerprint`), ``id = fingerprint[:16]``; the pattern is the
normalised statement / URL / key / route, so the same problem keeps its id across runs and restarts.

Every finding row is recomputed from ALL its stored occurrences whenever a pass touches it, so the
incremental worker merges new traces into existing findings instead of duplicating them:
``occurrences`` = number of traces, ``first_seen``/``last_seen`` = their root span start times,
``impact_ms`` = the sum of the occurrences' impact, ``example_trace_ids`` = the 3 most recent then the
2 worst (by impact; ties: most recent) distinct trace ids, ``code_*`` = the most common location across occurrences.
Title, evidence and fix hint come from the detector's ``describe(finding, thresholds)``; severity
comes from ONE rule for every kind, :func:`severity_for` (a detector may only cap it, see there).
"""

from __future__ import annotations

import json

#: Severity thresholds, one rule for every finding kind (see :func:`severity_for` and the README).
HIGH_MS_PER_REQUEST = 250.0
MEDIUM_MS_PER_REQUEST = 25.0
HIGH_TOTAL_MS = 10_000.0
MEDIUM_TOTAL_MS = 1_000.0
_RANK = {"low": 0, "medium": 1, "high": 2}


def severity_for(impact_ms: float, occurrences: int, cap: str | None = None) -> str:
    """The severity of a finding of any kind, from its estimated wasted time.

    ``impact_ms``: total impact over all occurrences (ms); ``occurrences``: affected requests
    (traces). ``'high'`` when the average impact per affected request is >= 250 ms or the total is
    >= 10 s; ``'medium'`` at >= 25 ms per request or >= 1 s in total; ``'low'`` otherwise.
    ``cap`` (``'low'``/``'medium'``) lowers the result to at most that level: a count-only N+1 (below
    its time threshold, reported for what a networked database would cost) stays ``'low'``.

    Where the numbers come from: the response-time limits of Nielsen (1993) and Google's RAIL
    model: ~100 ms feels instant, ~1 s keeps the user's flow of thought. 250 ms wasted in one
    request is a quarter of that 1 s budget and 2.5x the "instant" limit: users notice it on every
    request (high); 25 ms is a quarter of the 100 ms "instant" budget: noticeable once added to the
    rest of the request (medium). The totals catch frequent small waste: 10 s in the window is ten
    full "flow" budgets lost (high), 1 s is one (medium).
    """
    per_request = (impact_ms or 0.0) / max(occurrences or 0, 1)
    total = impact_ms or 0.0
    if per_request >= HIGH_MS_PER_REQUEST or total >= HIGH_TOTAL_MS:
        level = "high"
    elif per_request >= MEDIUM_MS_PER_REQUEST or total >= MEDIUM_TOTAL_MS:
        level = "medium"
    else:
        level = "low"
    if cap is not None and _RANK[cap] < _RANK[level]:
        return cap
    return level


#: The fingerprint of every (kind, service, endpoint, pattern) with an occurrence in the pass's traces
#: (a few dozen rows: hashed once each, joined with the occurrences by :func:`store_occurrences`).
FINGERPRINTS_SQL = """
CREATE OR REPLACE TEMP TABLE th_fp AS
SELECT kind, service, endpoint, pattern,
       sha256(concat_ws(chr(31), kind, service, endpoint, pattern)) AS fingerprint
FROM (SELECT DISTINCT kind, service, endpoint, pattern FROM th_occ o SEMI JOIN th_traces t ON t.tix = o.tix)
"""

AGG_SQL = """
SELECT o.finding_id, any_value(p.kind) AS kind, any_value(p.service) AS service,
       any_value(p.endpoint) AS endpoint, any_value(p.pattern) AS pattern, any_value(p.stats) AS stats,
       count(*) AS occurrences, min(o."timestamp") AS first_seen, max(o."timestamp") AS last_seen,
       sum(o.impact_ms) AS impact_ms, avg(o.span_count) AS avg_span_count,
       max(o.span_count) AS max_span_count, avg(o.duration_ms) AS avg_duration_ms,
       max(o.duration_ms) AS max_duration_ms,
       list(o.trace_id ORDER BY o."timestamp" DESC, o.trace_id)[1:3] AS recent,
       list(o.trace_id ORDER BY o.impact_ms DESC, o."timestamp" DESC, o.trace_id)[1:3] AS worst,
       mode({'filepath': o.code_filepath, 'lineno': o.code_lineno, 'function': o.code_function})
           FILTER (WHERE o.code_filepath IS NOT NULL) AS code,
       arg_max(o.detail, o."timestamp") AS detail
FROM finding_occurrences o JOIN finding_patterns p ON p.finding_id = o.finding_id
WHERE o.finding_id IN (SELECT id FROM th_ids)
GROUP BY o.finding_id
"""


def delete_occurrences(cur, kinds: list[str], windowed: set[str] = frozenset()) -> None:
    """Forget the occurrences of ``kinds`` in the traces of ``th_traces`` (before re-analysing them).

    For the ``windowed`` kinds only the occurrences of groups recorded in ``th_eval`` (the groups the
    detector actually evaluated in this window) are forgotten; the others are kept as they are.
    The ids of the findings they belonged to are remembered in ``th_touched`` for :func:`refresh`.
    """
    per_trace = [k for k in kinds if k not in windowed]
    win = [k for k in kinds if k in windowed]

    def quoted(names):
        return ", ".join("'" + k.replace("'", "''") + "'" for k in names) or "NULL"

    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE th_replace AS
            SELECT p.finding_id FROM finding_patterns p WHERE p.kind IN ({quoted(per_trace)})
            UNION
            SELECT p.finding_id FROM finding_patterns p JOIN th_eval e ON e.kind = p.kind
                AND (e.service IS NULL OR e.service = p.service)
                AND (e.endpoint IS NULL OR e.endpoint = p.endpoint)
                AND (e.pattern IS NULL OR e.pattern = p.pattern)
            WHERE p.kind IN ({quoted(win)})
            UNION  -- a group with fresh occurrences or statistics was evaluated by definition
            SELECT left(sha256(concat_ws(chr(31), kind, service, endpoint, pattern)), 16)
            FROM (SELECT kind, service, endpoint, pattern FROM th_occ
                  UNION SELECT kind, service, endpoint, pattern FROM th_stats)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_touched AS
            SELECT DISTINCT o.finding_id AS id FROM finding_occurrences o
            WHERE o.finding_id IN (SELECT finding_id FROM th_replace)
              AND o.trace_id IN (SELECT trace_id FROM th_traces)"""
    )
    cur.execute(
        """DELETE FROM finding_occurrences WHERE finding_id IN (SELECT id FROM th_touched)
            AND trace_id IN (SELECT trace_id FROM th_traces)"""
    )


def store_occurrences(cur) -> None:
    """Write ``th_occ`` (and ``th_stats``) into ``finding_occurrences`` / ``finding_patterns``."""
    cur.execute(FINGERPRINTS_SQL)
    cur.execute(
        """INSERT INTO finding_patterns
           SELECT left(fingerprint, 16), kind, service, endpoint, pattern, NULL, now()::TIMESTAMP
           FROM th_fp ON CONFLICT DO NOTHING"""
    )
    cur.execute(
        """INSERT INTO finding_patterns
           SELECT left(sha256(concat_ws(chr(31), kind, service, endpoint, pattern)), 16), kind, service,
                  endpoint, pattern, stats, now()::TIMESTAMP
           FROM th_stats
           ON CONFLICT (finding_id) DO UPDATE SET stats = excluded.stats, updated_at = excluded.updated_at"""
    )
    # one pass over th_occ: its span-id lists are read once and never go through a join's hash table
    # (th_occ is the probe side of every join; the traces, fingerprints and locations are built)
    cur.execute(
        """INSERT INTO finding_occurrences
           (finding_id, trace_id, "timestamp", impact_ms, span_count, duration_ms, span_ids,
            code_filepath, code_lineno, code_function, detail)
           SELECT left(fp.fingerprint, 16), t.trace_id, t.ts, o.impact_ms, o.span_count, o.duration_ms,
                  coalesce(o.sids, list_transform(o.span_ids, lambda x: TRY_CAST('0x' || x AS UBIGINT))),
                  c.filepath, c.lineno, c.function, o.detail
           FROM th_occ o JOIN th_fp fp ON fp.kind = o.kind AND fp.service = o.service
                AND fp.endpoint = o.endpoint AND fp.pattern = o.pattern
           JOIN th_traces t ON t.tix = o.tix LEFT JOIN th_code c ON c.code_h = o.code_h"""
    )
    cur.execute(
        """INSERT INTO th_touched SELECT left(fingerprint, 16) FROM th_fp
           UNION SELECT left(sha256(concat_ws(chr(31), kind, service, endpoint, pattern)), 16) FROM th_stats"""
    )


def refresh(cur, cfg) -> list[str]:
    """Recompute the ``findings`` rows of every id in ``th_touched`` from all their occurrences.

    Findings left without occurrences are deleted (the problem is gone from the re-analysed window).
    Returns the ids of the findings that exist after the refresh.
    """
    from tracehound.analyzer.detectors import DETECTORS

    cur.execute("CREATE OR REPLACE TEMP TABLE th_ids AS SELECT DISTINCT id FROM th_touched")
    rel = cur.execute(AGG_SQL)
    names = [d[0] for d in rel.description]
    rows = [dict(zip(names, r, strict=True)) for r in rel.fetchall()]
    out = []
    for f in rows:
        module = DETECTORS[f["kind"]]
        f["detail"] = json.loads(f["detail"]) if f["detail"] else {}
        f["stats"] = json.loads(f["stats"]) if f["stats"] else None
        code = f["code"] or {}
        f["where"] = _where(code)
        d = module.describe(f, cfg.get(f["kind"], f["service"], f["endpoint"]))
        examples = list(dict.fromkeys([*(f["recent"] or []), *(f["worst"] or [])[:2]]))
        fp = _fingerprint(f)
        out.append(
            (
                f["finding_id"],
                fp,
                f["kind"],
                severity_for(f["impact_ms"], f["occurrences"], d.get("max_severity")),
                f["service"],
                f["endpoint"],
                d["title"],
                f["occurrences"],
                f["first_seen"],
                f["last_seen"],
                round(f["impact_ms"] or 0.0, 3),
                json.dumps(d["evidence"], default=str),
                examples,
                code.get("filepath"),
                code.get("lineno"),
                code.get("function"),
                d["fix_hint"],
            )
        )
    cur.execute("DELETE FROM findings WHERE id IN (SELECT id FROM th_ids)")
    if out:
        cur.executemany(
            "INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
            out,
        )
    return [r[0] for r in out]


def _fingerprint(f: dict) -> str:
    from tracehound.analyzer.normalize import fingerprint

    return fingerprint(f["kind"], f["service"], f["endpoint"], f["pattern"])


def _where(code: dict) -> str:
    if not code.get("filepath"):
        return ""
    fn = f" in {code['function']}()" if code.get("function") else ""
    return f" at {code['filepath']}:{code.get('lineno')}{fn}"


def findings_as_dicts(cur, ids: list[str] | None = None) -> list[dict]:
    """Findings rows as dicts (``evidence`` parsed, ``code_location`` grouped), by impact desc.

    ``ids=None`` returns every finding.
    """
    where = ""
    if ids is not None:
        if not ids:
            return []
        cur.execute("CREATE OR REPLACE TEMP TABLE th_ret AS SELECT unnest(?::VARCHAR[]) AS id", [ids])
        where = "WHERE id IN (SELECT id FROM th_ret)"
    rel = cur.execute(f"SELECT * FROM findings {where} ORDER BY impact_ms DESC, id")
    names = [d[0] for d in rel.description]
    result = []
    for row in rel.fetchall():
        f = dict(zip(names, row, strict=True))
        f["evidence"] = json.loads(f["evidence"]) if isinstance(f["evidence"], str) else f["evidence"]
        f["code_location"] = {
            "filepath": f["code_filepath"],
            "lineno": f["code_lineno"],
            "function": f["code_function"],
        }
        result.append(f)
    return result
