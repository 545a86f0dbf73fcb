"""Helpers shared by the detectors: the occurrence buffer ``th_occ`` and small SQL snippets.

Every detector appends rows to the TEMP table ``th_occ``: one row per (problem, trace), with its
span ids either as hex strings (``span_ids``, detectors that build few rows in Python with
:func:`emit`) or as UBIGINTs (``sids``, the N+1 family, built in SQL), stored as UBIGINTs. The findings step (:mod:`tracehound.analyzer.findings`) turns them into
``finding_occurrences`` rows and merges them into ``findings`` keyed by
``fingerprint(kind, service, endpoint, pattern)``. Thresholds are resolved per route in Python once
(:func:`config_table`) and joined in SQL, so no detector goes through Python once per row.
Detectors with window-level statistics (percentiles, ratios) also append one row per problem to
``th_stats`` (``stats`` JSON), stored in ``finding_patterns``.

Windowed detectors also record in ``th_eval`` the groups they actually EVALUATED (enough volume for
their rule: e.g. a route with >= ``min_requests``); a re-analysis only replaces the stored
occurrences of evaluated groups, so a short window (too few requests to judge) never erases what an
earlier, larger window found. NULL in ``service``/``endpoint``/``pattern`` matches anything.
"""

from __future__ import annotations

import json

OCC_COLUMNS = (
    "kind",
    "service",
    "endpoint",
    "pattern",
    "tix",
    "impact_ms",
    "span_count",
    "duration_ms",
    "span_ids",
    "code_h",
    "detail",
    "sids",
)


def hex_sid(col: str) -> str:
    """SQL turning a UBIGINT span id back into 16 lowercase hex chars."""
    return f"th_hex({col})"


#: SQL macros: ``th_ms(ns)`` is :func:`ms` in SQL, bit for bit (Python's ``round(x, 3)`` rounds the
#: double's EXACT value half-to-even; DuckDB's ``round(x, 3)`` computes ``round(x * 1000) / 1000`` in
#: floating point and differs on ~1 in 10 values near a tie). ``th_r3`` takes the nearest multiple
#: ``m0`` of 0.001 as DuckDB finds it, then checks the exact distance to ``m0 +- 0.5`` with Dekker's
#: split (``hi`` and ``lo`` have <= 26 significant bits each, so ``* 1000`` is exact and the sign of
#: the sum is the sign of the exact difference) and moves ``m0`` by one when it was wrong.
#: ``th_hex(sid)`` is a UBIGINT span id as 16 lowercase hex chars.
MACROS = (
    """CREATE OR REPLACE TEMP MACRO th_r3_pick(m0, up, dn) AS (CASE
        WHEN up > 0 OR (up = 0 AND m0 % 2 <> 0) THEN m0 + 1
        WHEN dn < 0 OR (dn = 0 AND m0 % 2 <> 0) THEN m0 - 1 ELSE m0 END) / 1000::DOUBLE""",
    """CREATE OR REPLACE TEMP MACRO th_r3_fix(d, m0, c) AS th_r3_pick(m0,
        ((c - (c - d)) * 1000::DOUBLE - (m0 + 0.5::DOUBLE)) + (d - (c - (c - d))) * 1000::DOUBLE,
        ((c - (c - d)) * 1000::DOUBLE - (m0 - 0.5::DOUBLE)) + (d - (c - (c - d))) * 1000::DOUBLE)""",
    """CREATE OR REPLACE TEMP MACRO th_r3(d) AS
        th_r3_fix(d::DOUBLE, round(d::DOUBLE * 1000::DOUBLE), d::DOUBLE * 134217729::DOUBLE)""",
    "CREATE OR REPLACE TEMP MACRO th_ms(ns) AS th_r3(coalesce(ns, 0)::DOUBLE / 1e6::DOUBLE)",
    "CREATE OR REPLACE TEMP MACRO th_hex(sid) AS lpad(lower(hex(sid)), 16, '0')",
)


def temp_tables(cur, *prefixes: str) -> list[str]:
    """Names of this connection's TEMP tables that start with any of ``prefixes``, sorted."""
    rows = cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary "
        "AND list_bool_or(list_transform(?::VARCHAR[], lambda p: starts_with(table_name, p)))",
        [list(prefixes)],
    ).fetchall()
    return sorted(r[0] for r in rows)


def create_buffers(cur) -> None:
    """(Re)create the empty ``th_occ`` and ``th_stats`` buffers (and the :data:`MACROS`) for one
    analysis pass."""
    for sql in MACROS:
        cur.execute(sql)
    cur.execute("DROP TABLE IF EXISTS th_w")
    cur.execute("DROP TABLE IF EXISTS th_trace_rk")
    # left by a pass that failed between a detector's detect() and finish()
    for name in temp_tables(cur, "th_stash_", "th_stsrc_"):
        cur.execute(f'DROP TABLE "{name}"')
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_occ (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR, tix UBIGINT,
            impact_ms DOUBLE, span_count INTEGER, duration_ms DOUBLE, span_ids VARCHAR[],
            code_h UBIGINT, detail VARCHAR, sids UBIGINT[])"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_stats (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR, stats VARCHAR)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_eval (
            kind VARCHAR, service VARCHAR, endpoint VARCHAR, pattern VARCHAR)"""
    )


def config_table(cur, cfg, kind: str) -> None:
    """``th_cfg``: the thresholds of ``kind`` (``enabled`` and every ``DEFAULTS`` key) per distinct
    ``(service, endpoint)`` of ``th_traces``, resolved once per pair (overrides included), so the
    detectors filter their groups in SQL (join on ``service``, ``endpoint``) instead of per row."""
    import pyarrow as pa

    pairs = cur.execute("SELECT DISTINCT service, endpoint FROM th_traces").fetchall()
    keys = list(cfg.get(kind))
    cols = {"service": [p[0] for p in pairs], "endpoint": [p[1] for p in pairs]}
    for k in keys:
        cols[k] = [cfg.get(kind, p[0], p[1])[k] for p in pairs]
    types = {"service": pa.string(), "endpoint": pa.string()}
    table = pa.table({k: pa.array(v, types.get(k)) for k, v in cols.items()})
    cur.register("th_cfg_arrow", table)
    try:
        cur.execute("CREATE OR REPLACE TEMP TABLE th_cfg AS SELECT * FROM th_cfg_arrow")
    finally:
        cur.unregister("th_cfg_arrow")


#: ``th_routes``: small integer keys per route (``rk``) and service (``sk``); ``th_trace_rk``: each
#: trace's keys. ``th_w``: one narrow row per non-server span of the window with its operation
#: (``op_h = hash(cat, norm)``: it implies the category), route keys (no strings: millions of rows)
#: and ``sq_ok`` (a DB statement ``slow_query`` judges: not truncated, not empty). Built once per pass
#: for ``slow_query`` and ``slow_span``, which both aggregate every span's duration.
#: The route keys are resolved per trace first (the string join runs on 0.4 M traces, not on 10 M
#: spans), and ``th_w`` reads ``th_facts``: its inner join with the traces' keys already keeps only
#: the pass's traces (read through ``th_spans``, DuckDB joined the strings per span and semi-joined
#: the traces as well: 0.80 s vs 0.45 s for 9.6 M spans).
WINDOW_SPANS_SQL = (
    """CREATE OR REPLACE TEMP TABLE th_routes AS
       SELECT row_number() OVER (ORDER BY service, endpoint)::INTEGER AS rk,
              dense_rank() OVER (ORDER BY service)::INTEGER AS sk, service, endpoint
       FROM (SELECT DISTINCT service, endpoint FROM th_traces)""",
    """CREATE OR REPLACE TEMP TABLE th_trace_rk AS
       SELECT t.tix, r.rk, r.sk FROM th_traces t JOIN th_routes r USING (service, endpoint)""",
    """CREATE TEMP TABLE th_w AS
       SELECT s.tix, s.sid, s.start_ns, s.dur_ns, s.code_h, k.op_h, k.sq_ok, r.rk, r.sk
       FROM th_facts s
       JOIN th_trace_rk r ON r.tix = s.tix
       JOIN (SELECT key_h, op_h, cat = 'db' AND NOT is_truncated AND norm <> '' AS sq_ok FROM th_keys) k
            ON k.key_h = s.key_h
       WHERE s.cat <> 'server'""",
)


def route_keys(cur) -> None:
    """Create ``th_routes`` and ``th_trace_rk`` (see :data:`WINDOW_SPANS_SQL`) unless this pass
    already did (:func:`create_buffers` drops them at the start of every pass)."""
    if "th_trace_rk" in temp_tables(cur, "th_trace_rk"):
        return
    for sql in WINDOW_SPANS_SQL[:2]:
        cur.execute(sql)


def window_spans(cur) -> None:
    """Create ``th_routes``, ``th_trace_rk`` and ``th_w`` (see :data:`WINDOW_SPANS_SQL`) unless this
    pass already did; :func:`create_buffers` drops them at the start of every pass."""
    if "th_w" in temp_tables(cur, "th_w"):
        return
    route_keys(cur)
    cur.execute(WINDOW_SPANS_SQL[2])


def mark_evaluated(cur, kind: str, groups) -> None:
    """Record groups (``(service, endpoint, pattern)`` tuples, ``None`` = any) a windowed detector judged.

    ``groups`` may also be a SQL ``SELECT`` (a string) returning those three columns.
    """
    if isinstance(groups, str):
        cur.execute(f"INSERT INTO th_eval SELECT ?, * FROM ({groups})", [kind])
        return
    groups = [(kind, *g) for g in groups]
    if groups:
        cur.executemany("INSERT INTO th_eval VALUES (?, ?, ?, ?)", groups)


def emit(cur, rows: list[dict]) -> int:
    """Append occurrence dicts (keys: ``OCC_COLUMNS``; ``detail`` a dict) to ``th_occ``.

    For detectors with few occurrences; the N+1 family builds its occurrences in SQL
    (:func:`._repeats.emit_repeats`), and so do the windowed detectors whose groups have many
    (``INSERT INTO th_occ BY NAME ... JOIN th_flag``, see :func:`flag_groups`).
    """
    if not rows:
        return 0
    import pyarrow as pa

    cols = {c: [r.get(c) for r in rows] for c in OCC_COLUMNS}
    cols["detail"] = [json.dumps(d or {}, sort_keys=True, default=str) for d in cols["detail"]]
    schema = pa.schema(
        [
            ("kind", pa.string()),
            ("service", pa.string()),
            ("endpoint", pa.string()),
            ("pattern", pa.string()),
            ("tix", pa.uint64()),
            ("impact_ms", pa.float64()),
            ("span_count", pa.int32()),
            ("duration_ms", pa.float64()),
            ("span_ids", pa.list_(pa.string())),
            ("code_h", pa.uint64()),
            ("detail", pa.string()),
            ("sids", pa.list_(pa.uint64())),
        ]
    )
    cur.register("th_occ_arrow", pa.table(cols, schema=schema))
    try:
        cur.execute("INSERT INTO th_occ SELECT * FROM th_occ_arrow")
    finally:
        cur.unregister("th_occ_arrow")
    return len(rows)


def flag_groups(cur, groups: list[tuple]) -> None:
    """``th_flag``: the ``(service, endpoint, pattern)`` groups a windowed detector flagged (judged in
    Python, a few rows), for one ``INSERT INTO th_occ ... JOIN th_flag`` that builds all their
    occurrences in SQL (tens of thousands of rows never pass through Python)."""
    cur.execute("CREATE OR REPLACE TEMP TABLE th_flag (service VARCHAR, endpoint VARCHAR, pattern VARCHAR)")
    if groups:
        cur.executemany("INSERT INTO th_flag VALUES (?, ?, ?)", [tuple(g) for g in groups])


def emit_stats(cur, kind: str, service: str, endpoint: str, pattern: str, stats: dict) -> None:
    """Record window-level statistics of one problem (shown as the finding's evidence)."""
    cur.execute(
        "INSERT INTO th_stats VALUES (?, ?, ?, ?, ?)",
        [kind, service, endpoint, pattern, json.dumps(stats, sort_keys=True, default=str)],
    )


def ms(ns) -> float:
    """Nanoseconds to milliseconds, rounded to 0.001 ms."""
    return round((ns or 0) / 1e6, 3)
