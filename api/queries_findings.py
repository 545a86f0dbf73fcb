"""Findings: the filtered, sorted, paginated list and one finding with its example trace."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from .queries_traces import get_trace
from .query_base import FINDING_SORTS, SEVERITIES, TRACE_ID_RE, BadRequest, NotFound, _check_window


def encode_cursor(payload: dict) -> str:
    """Opaque pagination cursor: url-safe base64 of a small JSON object."""
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    """Inverse of :func:`encode_cursor`; raises :class:`BadRequest` for anything it did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or not {"s", "k", "id"} <= payload.keys():
            raise ValueError
        return payload
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("cursor is not one this API returned; pass next_cursor unchanged") from exc


_FINDING_COLUMNS = (
    "id, fingerprint, kind, severity, service, endpoint, title, occurrences, first_seen, last_seen, "
    "impact_ms, evidence, example_trace_ids, code_filepath, code_lineno, code_function, fix_hint"
)
#: ``finding_occurrences.span_ids`` (UBIGINT span ids) as the hex ids of ``otel_traces."SpanId"``.
_HEX_SPAN_IDS = "list_transform(span_ids, lambda x: printf('%016x', x)) AS span_ids"
_SORT_SQL = {"impact_ms": "impact_ms", "occurrences": "occurrences", "last_seen": "last_seen"}


def list_findings(
    cur,
    *,
    service: str | None = None,
    kind: str | None = None,
    endpoint: str | None = None,
    severity: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    sort: str = "impact_ms",
    limit: int = 50,
    cursor: str | None = None,
) -> dict:
    """Findings matching the filters, best first, one page at a time.

    Without ``since``/``until`` the counts are the finding's totals. With a window,
    ``occurrences``/``impact_ms``/``first_seen``/``last_seen`` are recomputed from
    ``finding_occurrences`` inside ``[since, until)`` and findings with none there are left out.
    ``sort`` is ``impact_ms`` (default), ``occurrences`` or ``last_seen``, always descending with
    ``id`` as tie-breaker (keyset pagination: the cursor stays valid while findings update).

    Returns ``{"items": [finding dict], "next_cursor": str | None}``.
    Raises :class:`BadRequest` for a bad ``severity``, ``sort``, window or cursor.
    """
    if severity is not None and severity not in SEVERITIES:
        raise BadRequest(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if sort not in FINDING_SORTS:
        raise BadRequest(f"sort must be one of {', '.join(FINDING_SORTS)}, got {sort!r}")
    since, until = _check_window(since, until)
    params: list = []
    if since or until:
        occ_where, occ_params = [], []
        if since:
            occ_where.append('"timestamp" >= ?')
            occ_params.append(since)
        if until:
            occ_where.append('"timestamp" < ?')
            occ_params.append(until)
        source = (
            "(SELECT f.* REPLACE (o.n AS occurrences, o.impact AS impact_ms, o.first AS first_seen, "
            "o.last AS last_seen) FROM findings f JOIN (SELECT finding_id, count(*) AS n, "
            'sum(impact_ms) AS impact, min("timestamp") AS first, max("timestamp") AS last '
            f"FROM finding_occurrences WHERE {' AND '.join(occ_where)} GROUP BY finding_id) o "
            "ON o.finding_id = f.id)"
        )
        params.extend(occ_params)
    else:
        source = "findings"
    where = []
    for column, value in (
        ("service", service),
        ("kind", kind),
        ("endpoint", endpoint),
        ("severity", severity),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    key = _SORT_SQL[sort]
    if cursor:
        position = decode_cursor(cursor)
        if position["s"] != sort:
            raise BadRequest("cursor belongs to another sort order; start again without cursor")
        bound = "CAST(? AS TIMESTAMP_NS)" if sort == "last_seen" else "?"
        where.append(f"({key} < {bound} OR ({key} = {bound} AND id > ?))")
        params.extend([position["k"], position["k"], position["id"]])
    sql = f"SELECT {_FINDING_COLUMNS} FROM {source} AS f"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {key} DESC, id LIMIT ?"
    params.append(limit + 1)
    rows = _finding_dicts(cur.execute(sql, params))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        k = last[sort].isoformat() if sort == "last_seen" else last[sort]
        next_cursor = encode_cursor({"s": sort, "k": k, "id": last["id"]})
    return {"items": rows, "next_cursor": next_cursor}


def _finding_dicts(result) -> list[dict]:
    names = [d[0] for d in result.description]
    out = []
    for row in result.fetchall():
        item = dict(zip(names, row, strict=True))
        item["evidence"] = json.loads(item["evidence"]) if item["evidence"] else {}
        item["code_location"] = {
            "filepath": item.pop("code_filepath"),
            "lineno": item.pop("code_lineno"),
            "function": item.pop("code_function"),
        }
        out.append(item)
    return out


def get_finding(cur, finding_id: str) -> dict:
    """One finding with its latest occurrences and the waterfall of its example trace.

    Returns the finding dict plus ``recent_occurrences`` (up to 20, newest first) and
    ``example`` (``None`` when no example trace is stored any more, else ``{"trace_id",
    "highlight_span_ids", "trace"}`` with ``trace`` as from :func:`get_trace`).
    Raises :class:`NotFound` when no finding has this id.
    """
    rows = _finding_dicts(cur.execute(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id = ?", [finding_id]))
    if not rows:
        raise NotFound(f"finding {finding_id!r} not found")
    finding = rows[0]
    occ = cur.execute(
        f'SELECT trace_id, "timestamp", impact_ms, span_count, duration_ms, {_HEX_SPAN_IDS} FROM finding_occurrences '
        'WHERE finding_id = ? ORDER BY "timestamp" DESC LIMIT 20',
        [finding_id],
    ).fetchall()
    finding["recent_occurrences"] = [
        {
            "trace_id": t,
            "timestamp": ts,
            "impact_ms": i,
            "span_count": n,
            "duration_ms": d,
            "span_ids": list(s),
        }
        for t, ts, i, n, d, s in occ
    ]
    finding["example"] = None
    examples = [t for t in finding["example_trace_ids"] if TRACE_ID_RE.match(t or "")]
    known = {
        t: (ts, list(ids))
        for t, ts, ids in cur.execute(
            f'SELECT trace_id, "timestamp", {_HEX_SPAN_IDS} FROM finding_occurrences '
            "WHERE finding_id = ? AND list_contains(?, trace_id)",
            [finding_id, examples],
        ).fetchall()
    }
    for o in finding["recent_occurrences"]:
        known.setdefault(o["trace_id"], (o["timestamp"], o["span_ids"]))
    ordered = [t for t in examples if t in known] + [o["trace_id"] for o in finding["recent_occurrences"]]
    for trace_id in dict.fromkeys(ordered):  # unique, in order
        around, highlight = known[trace_id]
        try:
            trace = get_trace(cur, trace_id, around=around)
        except (NotFound, BadRequest):
            continue
        for span in trace["spans"]:
            span["highlight"] = span["span_id"] in highlight
        finding["example"] = {"trace_id": trace_id, "highlight_span_ids": highlight, "trace": trace}
        break
    return finding
