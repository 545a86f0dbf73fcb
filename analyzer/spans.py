"""Selecting traces, classifying their spans, and normalising each distinct operation once.

Builds connection-local TEMP tables that every detector reads (run on one cursor):

``th_traces``  one row per analysed trace: ``tix`` (a small int id), ``trace_id``, ``service``,
               ``endpoint`` (``http.route`` of the root server span, ``''`` without one),
               ``http_method``, ``http_status_code``, ``start_ns``, ``ts``, ``duration_ns``, ``is_error``,
               ``root_sid``. The root is the earliest ``Server`` span of the trace.
``th_spans``   one narrow row per span of those traces: ``tix``, ``sid``/``pid`` (span / parent id as
               UBIGINT, 0 = no parent), ``start_ns``, ``end_ns``, ``dur_ns``, ``cat``, ``key_h``
               (hash of the raw operation), ``params_h``, ``code_h``, ``cache_hit``, ORM lazy-load info.
``th_keys``    one row per distinct raw operation: its normalised form (``norm``), ``op_h`` (hash of
               the normalised form: spans with equal ``op_h`` do the same thing), and flags.
``th_code``    one row per distinct code location (``code_h`` -> filepath, lineno, function).

Classification (``cat``) from the attribute contract, first match wins:
``connect`` (span named ``connect``: a new DB connection), ``cache`` (``cache.operation``, a ``cache.*``
name, or ``db.system`` redis/memcached: like Sentry, redis is never an N+1 *DB* query), ``db``
(``db.system``/``db.system.name``/``db.statement``/``db.query.text``), ``http`` (CLIENT span with
``http.request.method``/``http.method``), ``template`` (``jinja2.*``), ``server`` (SERVER span), ``other``.

Raw strings never enter ``th_spans`` (10 M statements would not fit in 2 GB): they are scanned once
for their DISTINCT values, normalised in Python, and referenced by hash.
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

A = "SpanAttributes"
_STMT = f"coalesce({A}['db.statement'], {A}['db.query.text'])"
_DBSYS = f"coalesce({A}['db.system'], {A}['db.system.name'])"
_METHOD = f"coalesce({A}['http.request.method'], {A}['http.method'])"
_URL = f"coalesce({A}['url.full'], {A}['http.url'])"

CAT_SQL = f"""CASE
    WHEN "SpanName" = 'connect' THEN 'connect'
    WHEN {A}['cache.operation'] IS NOT NULL OR "SpanName" LIKE 'cache.%'
         OR {_DBSYS} IN ('redis', 'memcached') THEN 'cache'
    WHEN {_DBSYS} IS NOT NULL OR {_STMT} IS NOT NULL THEN 'db'
    WHEN "SpanKind" = 'Client' AND {_METHOD} IS NOT NULL THEN 'http'
    WHEN "SpanName" LIKE 'jinja2.%' THEN 'template'
    WHEN "SpanKind" = 'Server' THEN 'server'
    ELSE 'other' END"""

#: The raw operation text per category: what gets normalised and grouped.
RAW_SQL = f"""CASE cat
    WHEN 'db' THEN coalesce({_STMT}, "SpanName")
    WHEN 'cache' THEN coalesce({A}['cache.operation'] || ' ' || {A}['cache.key'], {_STMT}, "SpanName")
    WHEN 'http' THEN {_METHOD} || ' ' || coalesce({_URL}, {A}['server.address'], "SpanName")
    ELSE "SpanName" END"""

_CODE_FP = f"coalesce({A}['code.filepath'], {A}['code.file.path'])"
_CODE_LN = f"TRY_CAST(coalesce({A}['code.lineno'], {A}['code.line.number']) AS INTEGER)"
_CODE_FN = f"coalesce({A}['code.function'], {A}['code.function.name'])"


def _hex_id(col: str) -> str:
    return f"""CASE WHEN "{col}" = '' THEN 0::UBIGINT ELSE TRY_CAST('0x' || "{col}" AS UBIGINT) END"""


def select_traces(
    cur,
    since_ns: int | None = None,
    until_ns: int | None = None,
    trace_ids=None,
    min_rowid: int | None = None,
) -> int:
    """Create ``th_traces`` for traces whose root server span starts in ``[since_ns, until_ns)`` (ns
    since the epoch, either bound optional), or for the given ``trace_ids`` (an iterable of hex ids).

    ``min_rowid`` restricts the scan to rows ingested at or after that ``otel_traces`` rowid (the
    incremental worker knows where its traces start). Returns the number of traces selected.
    """
    where = ["\"SpanKind\" = 'Server'"]
    params: list = []
    if min_rowid is not None:
        where.append("rowid >= ?")
        params.append(min_rowid)
    if trace_ids is not None:
        import pyarrow as pa

        cur.register("th_sel_arrow", pa.table({"trace_id": pa.array(list(trace_ids), pa.string())}))
        cur.execute("CREATE OR REPLACE TEMP TABLE th_sel AS SELECT DISTINCT trace_id FROM th_sel_arrow")
        cur.unregister("th_sel_arrow")
        where.append('"TraceId" IN (SELECT trace_id FROM th_sel)')
    having = []
    if since_ns is not None:
        having.append('epoch_ns(min("Timestamp")) >= ?')
        params.append(int(since_ns))
    if until_ns is not None:
        having.append('epoch_ns(min("Timestamp")) < ?')
        params.append(int(until_ns))
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE th_traces AS
        SELECT (row_number() OVER (ORDER BY trace_id))::INTEGER AS tix, trace_id,
               r.service, coalesce(r.route, '') AS endpoint, coalesce(r.method, '') AS http_method,
               r.status AS http_status_code, epoch_ns(r.ts) AS start_ns, r.ts, r.dur AS duration_ns,
               (r.code = 'Error' OR coalesce(r.status, 0) >= 500) AS is_error, r.sid AS root_sid
        FROM (
            SELECT "TraceId" AS trace_id,
                   arg_min({{'service': "ServiceName", 'route': {A}['http.route'],
                             'method': {_METHOD},
                             'status': TRY_CAST(coalesce({A}['http.response.status_code'],
                                                         {A}['http.status_code']) AS INTEGER),
                             'ts': "Timestamp", 'dur': "Duration", 'code': "StatusCode",
                             'sid': {_hex_id("SpanId")}}}, "Timestamp") AS r
            FROM otel_traces WHERE {" AND ".join(where)}
            GROUP BY "TraceId" {("HAVING " + " AND ".join(having)) if having else ""}
        )
        """,
        params,
    )
    return cur.execute("SELECT count(*) FROM th_traces").fetchall()[0][0]


def load_spans(cur, min_rowid: int | None = None) -> int:
    """Create ``th_spans``, ``th_keys`` and ``th_code`` for the traces in ``th_traces``.

    Two scans of ``otel_traces`` restricted to those traces: one for the DISTINCT raw operations and
    code locations (normalised here in Python), one for the narrow per-span rows. Returns the span count.
    """
    rowid_filter = "AND s.rowid >= ?" if min_rowid is not None else ""
    params = [min_rowid] if min_rowid is not None else []
    base = f"""
        SELECT {CAT_SQL} AS cat, s.rowid AS rid, s.*
        FROM otel_traces s SEMI JOIN th_traces t ON s."TraceId" = t.trace_id
        WHERE true {rowid_filter}
    """
    rows = cur.execute(
        f"""
        SELECT cat, raw, fp, ln, fn FROM (
            SELECT cat, {RAW_SQL} AS raw, {_CODE_FP} AS fp, {_CODE_LN} AS ln, {_CODE_FN} AS fn
            FROM ({base})
        ) GROUP BY GROUPING SETS ((cat, raw), (fp, ln, fn))
        """,
        params,
    ).fetchall()
    _build_dictionaries(cur, rows)
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE th_spans AS
        SELECT t.tix, b.rid, {_hex_id("SpanId")} AS sid, {_hex_id("ParentSpanId")} AS pid,
               epoch_ns(b."Timestamp") AS start_ns, b."Duration" AS dur_ns,
               epoch_ns(b."Timestamp") + b."Duration" AS end_ns,
               b.cat, hash(b.cat, {RAW_SQL}) AS key_h,
               CASE WHEN {A}['tracehound.db.params_hash'] IS NOT NULL
                    THEN hash({A}['tracehound.db.params_hash']) END AS params_h,
               CASE WHEN {_CODE_FP} IS NULL THEN NULL ELSE hash({_CODE_FP}, {_CODE_LN}, {_CODE_FN}) END AS code_h,
               CASE {A}['cache.hit'] WHEN 'true' THEN true WHEN 'false' THEN false END AS cache_hit,
               {A}['tracehound.orm.relationship'] AS orm_rel,
               {A}['tracehound.orm.uselist'] = 'true' AS orm_uselist,
               b."StatusCode" = 'Error' AS is_error
        FROM ({base}) b JOIN th_traces t ON b."TraceId" = t.trace_id
        """,
        params,
    )
    return cur.execute("SELECT count(*) FROM th_spans").fetchall()[0][0]


def _build_dictionaries(cur, rows) -> None:
    import pyarrow as pa

    keys: dict[str, list] = {
        k: [] for k in ("cat", "raw", "norm", "sql_op", "has_literals", "is_batch", "is_truncated")
    }
    code: dict[str, list] = {"filepath": [], "lineno": [], "function": []}
    for cat, raw, fp, ln, fn in rows:
        if cat is not None:
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
            for k, v in zip(keys, (cat, raw, norm, *flags), strict=True):
                keys[k].append(v)
        elif fp is not None:
            code["filepath"].append(fp)
            code["lineno"].append(ln)
            code["function"].append(fn)
    cur.register(
        "th_keys_arrow",
        pa.table(
            keys,
            schema=pa.schema(
                [
                    ("cat", pa.string()),
                    ("raw", pa.string()),
                    ("norm", pa.string()),
                    ("sql_op", pa.string()),
                    ("has_literals", pa.bool_()),
                    ("is_batch", pa.bool_()),
                    ("is_truncated", pa.bool_()),
                ]
            ),
        ),
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_keys AS
           SELECT hash(cat, raw) AS key_h, cat, norm, hash(cat, norm) AS op_h, left(raw, 2000) AS example,
                  sql_op, has_literals, is_batch, is_truncated
           FROM th_keys_arrow"""
    )
    cur.unregister("th_keys_arrow")
    cur.register(
        "th_code_arrow",
        pa.table(
            code,
            schema=pa.schema([("filepath", pa.string()), ("lineno", pa.int32()), ("function", pa.string())]),
        ),
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE th_code AS
           SELECT DISTINCT hash(filepath, lineno, function) AS code_h, filepath, lineno, function
           FROM th_code_arrow"""
    )
    cur.unregister("th_code_arrow")
