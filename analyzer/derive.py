"""Span facts: the ~dozen attributes the detectors need, extracted from ``otel_traces`` ONCE per span.

Reading ``SpanAttributes`` (a MAP) is the expensive part of any analysis: each key lookup scans the
map's entries, and the detectors need about 18 lookups per span. Doing that on every analysis pass
made a full analysis of 10 M spans take minutes. Instead, :func:`refresh_facts` appends one narrow
row per NEW span (``otel_traces.rowid`` above the watermark ``analyzer_state['facts_rowid']``) to
``span_facts``, normalises each NEW distinct statement / URL / cache key once (``span_keys``) and
records each new code location (``span_code``). Every analysis (batch :func:`tracehound.analyzer.analyze`
and the incremental worker) first calls it, then reads only these tables. The worker calls it every
pass, so facts are built at the ingest rate (a few ms per thousand spans) and a later full analysis
finds them ready.

``span_facts`` columns (one row per span): ``rid`` (``otel_traces.rowid``), ``trace_h`` (64-bit hash of
``TraceId``: the analysis' trace key), ``sid``/``pid`` (span / parent id as UBIGINT, 0 = no parent),
``start_ns``, ``dur_ns``, ``cat`` (see :data:`CAT_SQL`), ``key_h`` (-> ``span_keys``), ``params_h``,
``code_h`` (-> ``span_code``), ``cache_hit``, ``orm_rel``, ``orm_uselist``, ``is_error`` (span status
Error), ``new_conn`` (a ``connect`` span the instrumentation marked ``tracehound.db.new_connection``:
the pool opened a new DB-API connection, not just a checkout); and, for SERVER spans only (NULL otherwise), the root facts ``trace_id``, ``service``,
``route``, ``method``, ``status``.

Why a derived table in the analyzer rather than extra ``otel_traces`` columns computed at ingest:
the same one-pass extraction, but (1) the collector's hot path stays untouched (no ingest cost, no
normalisation in the receiver threads), (2) ``otel_traces`` keeps the ClickHouse exporter's exact
shape, and (3) rows written by anything (``insert_span_rows``, the bench generator, an older
tracehound) are covered by the same watermark. When the derivation rules change, bump
:data:`FACTS_VERSION`: the facts are dropped and rebuilt on the next analysis.

Assumes ``otel_traces`` is append-only (nothing in tracehound deletes spans). If the table shrank
below the watermark (a replaced database), the facts are rebuilt.
"""

from __future__ import annotations

from tracehound.analyzer.normalize import (
    normalize_cache_key,
    normalize_sql,
    normalize_url,
    sql_has_literals,
    sql_is_batch,
    sql_is_truncated,
    sql_operation,
)

#: Bump when the extraction or normalisation rules change: facts are rebuilt from scratch.
FACTS_VERSION = "2"
#: Rows of ``otel_traces`` extracted per statement (bounds the staging table's memory).
CHUNK_ROWS = 2_000_000

SPAN_FACTS_DDL = """
CREATE TABLE IF NOT EXISTS span_facts (
    rid BIGINT, trace_h UBIGINT, sid UBIGINT, pid UBIGINT, start_ns BIGINT, dur_ns BIGINT,
    cat VARCHAR, key_h UBIGINT, params_h UBIGINT, code_h UBIGINT, cache_hit BOOLEAN,
    orm_rel VARCHAR, orm_uselist BOOLEAN, is_error BOOLEAN, new_conn BOOLEAN,
    trace_id VARCHAR, service VARCHAR, route VARCHAR, method VARCHAR, status INTEGER
)
"""
SPAN_KEYS_DDL = """
CREATE TABLE IF NOT EXISTS span_keys (
    key_h UBIGINT PRIMARY KEY, cat VARCHAR, norm VARCHAR, op_h UBIGINT, example VARCHAR,
    sql_op VARCHAR, has_literals BOOLEAN, is_batch BOOLEAN, is_truncated BOOLEAN
)
"""
SPAN_CODE_DDL = """
CREATE TABLE IF NOT EXISTS span_code (
    code_h UBIGINT PRIMARY KEY, filepath VARCHAR, lineno INTEGER, "function" VARCHAR
)
"""


def _a(key: str) -> str:
    return f"map_extract_value(\"SpanAttributes\", '{key}')"


# Attribute lookups, each done once and only where it can matter: the category needs four keys
# (with their old/new spellings), the rest is looked up only for the categories that use it
# (DuckDB evaluates a CASE branch only for the rows that take it).
_CAT_ATTRS = {
    "a_stmt": f"coalesce({_a('db.statement')}, {_a('db.query.text')})",
    "a_dbsys": f"coalesce({_a('db.system')}, {_a('db.system.name')})",
    "a_method": f"coalesce({_a('http.request.method')}, {_a('http.method')})",
    "a_cache_op": _a("cache.operation"),
}
_WHEN = {
    "a_url": ("cat = 'http'", f"coalesce({_a('url.full')}, {_a('http.url')}, {_a('server.address')})"),
    "a_cache_key": ("cat = 'cache'", _a("cache.key")),
    "a_cache_hit": ("cat = 'cache'", _a("cache.hit")),
    "a_params": ("cat IN ('db', 'cache')", _a("tracehound.db.params_hash")),
    "a_fp": ("cat <> 'server'", f"coalesce({_a('code.filepath')}, {_a('code.file.path')})"),
    "a_orm_rel": ("cat = 'db'", _a("tracehound.orm.relationship")),
    "a_orm_uselist": ("cat = 'db'", _a("tracehound.orm.uselist")),
    "a_new_conn": ("cat = 'connect'", _a("tracehound.db.new_connection")),
    "a_route": ("cat = 'server' OR \"SpanKind\" = 'Server'", _a("http.route")),
    "a_status": (
        "\"SpanKind\" = 'Server'",
        f"TRY_CAST(coalesce({_a('http.response.status_code')}, {_a('http.status_code')}) AS INTEGER)",
    ),
}
# Line and function only where a file path was found.
_CODE_REST = {
    "a_ln": f"TRY_CAST(coalesce({_a('code.lineno')}, {_a('code.line.number')}) AS INTEGER)",
    "a_fn": f"coalesce({_a('code.function')}, {_a('code.function.name')})",
}

#: Span category, first match wins (see :mod:`tracehound.analyzer.spans`).
CAT_SQL = """CASE
    WHEN "SpanName" = 'connect' THEN 'connect'
    WHEN a_cache_op IS NOT NULL OR "SpanName" LIKE 'cache.%' OR a_dbsys IN ('redis', 'memcached') THEN 'cache'
    WHEN a_dbsys IS NOT NULL OR a_stmt IS NOT NULL THEN 'db'
    WHEN "SpanKind" = 'Client' AND a_method IS NOT NULL THEN 'http'
    WHEN "SpanName" LIKE 'jinja2.%' THEN 'template'
    WHEN "SpanKind" = 'Server' THEN 'server'
    ELSE 'other' END"""

#: The raw operation text per category: what gets normalised and grouped.
RAW_SQL = """CASE cat
    WHEN 'db' THEN coalesce(a_stmt, "SpanName")
    WHEN 'cache' THEN coalesce(a_cache_op || ' ' || a_cache_key, a_stmt, "SpanName")
    WHEN 'http' THEN a_method || ' ' || coalesce(a_url, "SpanName")
    ELSE "SpanName" END"""


def _hex_id(col: str) -> str:
    return f"""CASE WHEN "{col}" = '' THEN 0::UBIGINT ELSE TRY_CAST('0x' || "{col}" AS UBIGINT) END"""


_BASE_COLS = (
    'rid, "TraceId", "SpanId", "ParentSpanId", "Timestamp", "Duration", "SpanName", "SpanKind", '
    '"ServiceName", "StatusCode", "SpanAttributes"'
)

_CTES = f"""
WITH l1 AS (
    SELECT rowid AS rid, * EXCLUDE ("ResourceAttributes", "ScopeAttributes", "Events", "Links"),
           {", ".join(f"{v} AS {k}" for k, v in _CAT_ATTRS.items())}
    FROM otel_traces WHERE {{where}}
), l2 AS (
    SELECT *, {CAT_SQL} AS cat FROM l1
), l3 AS (
    SELECT *, {", ".join(f"CASE WHEN {w} THEN {v} END AS {k}" for k, (w, v) in _WHEN.items())} FROM l2
), l4 AS (
    SELECT *, {", ".join(f"CASE WHEN a_fp IS NOT NULL THEN {v} END AS {k}" for k, v in _CODE_REST.items())},
           {RAW_SQL} AS raw FROM l3
)
"""

#: One fact row per span (no raw strings: those are fetched only for spans with a NEW key or code).
_FACTS_SELECT = f"""
SELECT rid, hash("TraceId") AS trace_h, {_hex_id("SpanId")} AS sid, {_hex_id("ParentSpanId")} AS pid,
       epoch_ns("Timestamp") AS start_ns, "Duration" AS dur_ns, cat, hash(cat, raw) AS key_h,
       CASE WHEN a_params IS NOT NULL THEN hash(a_params) END AS params_h,
       CASE WHEN a_fp IS NOT NULL THEN hash(a_fp, a_ln, a_fn) END AS code_h,
       CASE a_cache_hit WHEN 'true' THEN true WHEN 'false' THEN false END AS cache_hit,
       a_orm_rel AS orm_rel, a_orm_uselist = 'true' AS orm_uselist, "StatusCode" = 'Error' AS is_error,
       a_new_conn = 'true' AS new_conn,
       CASE WHEN "SpanKind" = 'Server' THEN "TraceId" END AS trace_id,
       CASE WHEN "SpanKind" = 'Server' THEN "ServiceName" END AS service,
       CASE WHEN "SpanKind" = 'Server' THEN a_route END AS route,
       CASE WHEN "SpanKind" = 'Server' THEN a_method END AS method, a_status AS status
FROM l4
"""

_FACT_COLS = (
    "rid, trace_h, sid, pid, start_ns, dur_ns, cat, key_h, params_h, code_h, cache_hit, orm_rel, "
    "orm_uselist, is_error, new_conn, trace_id, service, route, method, status"
)


def _facts_version() -> str:
    import duckdb

    return f"{FACTS_VERSION}/duckdb-{duckdb.__version__}"


def ensure_facts_schema(cur) -> None:
    """Create ``span_facts`` / ``span_keys`` / ``span_code`` if missing (idempotent, cheap)."""
    for ddl in (SPAN_FACTS_DDL, SPAN_KEYS_DDL, SPAN_CODE_DDL):
        cur.execute(ddl)


def _state(cur, key: str) -> str | None:
    rows = cur.execute("SELECT value FROM analyzer_state WHERE key = ?", [key]).fetchall()
    return rows[0][0] if rows else None


def refresh_facts(cur) -> int:
    """Append facts for every ``otel_traces`` row not covered yet; returns the number of spans added.

    Runs in its own transaction per chunk of :data:`CHUNK_ROWS` rows (facts, new keys, new code
    locations and the watermark ``facts_rowid`` commit together), so an interrupted refresh resumes
    where it stopped. Rebuilds everything when :data:`FACTS_VERSION` or the DuckDB version changed
    (the persisted keys are DuckDB ``hash()`` values, stable only within one version) or ``otel_traces``
    shrank below the watermark.
    """
    ensure_facts_schema(cur)
    top = cur.execute("SELECT coalesce(max(rowid) + 1, 0) FROM otel_traces").fetchall()[0][0]
    mark = int(_state(cur, "facts_rowid") or 0)
    version = _facts_version()
    if _state(cur, "facts_version") != version or top < mark:
        cur.execute("BEGIN TRANSACTION")
        for table in ("span_facts", "span_keys", "span_code"):  # dropped: the columns may have changed
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        ensure_facts_schema(cur)
        cur.execute(
            "INSERT OR REPLACE INTO analyzer_state VALUES ('facts_version', ?), ('facts_rowid', '0')",
            [version],
        )
        cur.execute("COMMIT")
        mark = 0
    added = 0
    while mark < top:
        hi = min(mark + CHUNK_ROWS, top)
        cur.execute("BEGIN TRANSACTION")
        try:
            added += cur.execute(
                f"INSERT INTO span_facts ({_FACT_COLS}) "
                + _CTES.format(where=f"rowid >= {int(mark)} AND rowid < {int(hi)}")
                + _FACTS_SELECT
            ).fetchall()[0][0]
            _add_keys(cur, mark, hi)
            cur.execute("INSERT OR REPLACE INTO analyzer_state VALUES ('facts_rowid', ?)", [str(hi)])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        mark = hi
    return added


def _add_keys(cur, lo: int, hi: int) -> None:
    """Normalise the chunk's NEW distinct operations in Python and record its new code locations.

    Only one span per new key / code location is read again from ``otel_traces`` (by rowid), so
    the raw strings of the millions of spans with known operations are never materialised.
    """
    import pyarrow as pa

    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_new_rids AS
           SELECT min(rid) AS rid FROM span_facts f
           WHERE rid >= ? AND rid < ? AND NOT EXISTS (SELECT 1 FROM span_keys k WHERE k.key_h = f.key_h)
           GROUP BY key_h
           UNION
           SELECT min(rid) FROM span_facts f
           WHERE rid >= ? AND rid < ? AND code_h IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM span_code c WHERE c.code_h = f.code_h)
           GROUP BY code_h""",
        [lo, hi, lo, hi],
    )
    if not cur.execute("SELECT count(*) FROM th_new_rids").fetchall()[0][0]:
        return
    cur.execute(
        "CREATE OR REPLACE TEMP TABLE th_stage AS "
        + _CTES.format(where="rowid IN (SELECT rid FROM th_new_rids)")
        + """SELECT hash(cat, raw) AS key_h, cat, raw, a_fp, a_ln, a_fn,
                    CASE WHEN a_fp IS NOT NULL THEN hash(a_fp, a_ln, a_fn) END AS code_h FROM l4"""
    )
    rows = cur.execute(
        """SELECT DISTINCT s.key_h, s.cat, s.raw FROM th_stage s
           WHERE NOT EXISTS (SELECT 1 FROM span_keys k WHERE k.key_h = s.key_h)"""
    ).fetchall()
    cols: dict[str, list] = {
        k: [] for k in ("key_h", "cat", "norm", "sql_op", "has_literals", "is_batch", "is_truncated", "raw")
    }
    for key_h, cat, raw in rows:
        raw = raw or ""
        if cat == "db":
            norm = normalize_sql(raw)
            flags = (sql_operation(norm), sql_has_literals(raw), sql_is_batch(raw), sql_is_truncated(raw))
        elif cat == "http":
            method, _, url = raw.partition(" ")
            norm, flags = normalize_url(method, url), ("", False, False, False)
        elif cat == "cache":
            norm, flags = normalize_cache_key(raw), ("", False, False, False)
        else:
            norm, flags = raw, ("", False, False, False)
        for k, v in zip(cols, (key_h, cat, norm, *flags, raw), strict=True):
            cols[k].append(v)
    if rows:
        schema = pa.schema(
            [
                ("key_h", pa.uint64()),
                ("cat", pa.string()),
                ("norm", pa.string()),
                ("sql_op", pa.string()),
                ("has_literals", pa.bool_()),
                ("is_batch", pa.bool_()),
                ("is_truncated", pa.bool_()),
                ("raw", pa.string()),
            ]
        )
        cur.register("th_keys_arrow", pa.table(cols, schema=schema))
        try:
            cur.execute(
                """INSERT INTO span_keys
                   SELECT key_h, cat, norm, hash(cat, norm), left(raw, 2000), sql_op, has_literals,
                          is_batch, is_truncated FROM th_keys_arrow"""
            )
        finally:
            cur.unregister("th_keys_arrow")
    cur.execute(
        """INSERT INTO span_code
           SELECT DISTINCT ON (code_h) code_h, a_fp, a_ln, a_fn FROM th_stage s
           WHERE code_h IS NOT NULL AND NOT EXISTS (SELECT 1 FROM span_code c WHERE c.code_h = s.code_h)"""
    )
    cur.execute("DROP TABLE th_stage")
