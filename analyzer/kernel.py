"""The per-trace kernel: summaries and repeat groups of one chunk of traces in one pass (C).

The chunked per-trace phase (:mod:`tracehound.analyzer.engine`) needs, per chunk of traces:

* the covered time of every parent span (for the exclusive-time breakdown of
  :mod:`tracehound.analyzer.summaries`) and the per-trace span counts and duration sums;
* the iteration anchors and the repeat groups of the N+1 / repeated-operation detectors
  (:mod:`tracehound.analyzer.detectors._repeats`).

The SQL path computes these with set-based statements over the whole chunk (a window partitioned
by parent, GROUP BYs on 64-bit group keys); on 10 M spans those cost about 8 of the analysis' 18
CPU-bound seconds, nearly all of it partitioning and sorting millions of rows. ``_kernel.c`` gets
the chunk's span facts once (one scan, as numpy arrays), buckets the rows by trace and then sorts
and sweeps each trace's few dozen spans while they sit in the CPU cache.

The results are the SQL path's, row for row, in the same TEMP tables (``th_summary``, built once
after the last chunk by :func:`finish_summaries`, and the stashed ``th_cand``/``th_src`` of each
repeat detector; ``tests/test_analyzer_kernel.py`` compares
the two paths on the same spans), with two differences where SQL leaves a tie to chance: the most
common code location (``mode``) of a group goes to the smallest ``code_h`` on a tie, and a group's
first span (``arg_min`` by start) to the smallest span id on equal starts; the source span on equal
starts to the largest span id.

The kernel is an optional C extension (like the collector's decoder): without a C compiler at
install time, or with ``TRACEHOUND_ANALYZER_KERNEL=sql``, the SQL path runs instead.
"""

from __future__ import annotations

import os

try:
    from tracehound.analyzer import _kernel  # built from _kernel.c; optional (no C compiler: SQL)
except ImportError:  # pragma: no cover - depends on the build
    _kernel = None

#: Span category -> the kernel's code (``enum`` in ``_kernel.c``).
CAT_CODES = {"other": 0, "db": 1, "connect": 2, "cache": 3, "http": 4, "template": 5, "server": 6}
_CAT_SQL = "CASE cat " + " ".join(f"WHEN '{c}' THEN {n}" for c, n in CAT_CODES.items()) + " ELSE 0 END"


def available() -> bool:
    """Whether the per-trace phase uses the kernel: the extension is built and
    ``TRACEHOUND_ANALYZER_KERNEL`` is not ``sql`` (the SQL path; for comparisons and tests)."""
    return _kernel is not None and os.environ.get("TRACEHOUND_ANALYZER_KERNEL", "c").lower() != "sql"


def _key_table(cur, modules) -> None:
    """``th_kk``: every operation key with its ``op_h``, ``has_literals``, and two bit masks over
    ``modules`` (bit i = ``modules[i]``): ``kf`` (the detector groups spans of this key: its
    ``CATEGORY`` and ``KEY_FILTER``) and ``knp`` (it also needs a ``tracehound.db.params_hash``:
    ``NEEDS_PARAMS``; :func:`._repeats.key_filters`). Evaluated once per distinct operation, as in the
    SQL path's ``th_rkeys``."""
    from tracehound.analyzer.detectors._repeats import key_filters

    def mask(which: int) -> str:
        return " | ".join(
            f"CASE WHEN coalesce({key_filters(m)[which]}, false) THEN {1 << i} ELSE 0 END"
            for i, m in enumerate(modules)
        )

    kf, knp = mask(0), mask(1)
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE th_kk AS
            SELECT k.key_h, k.op_h, k.has_literals, ({kf or 0})::UTINYINT AS kf, ({knp or 0})::UTINYINT AS knp
            FROM th_keys k"""
    )


def _fetch(cur):
    """The chunk's spans (``th_spans``) as numpy arrays (per column, a list of pieces), NULLs encoded
    for the kernel (0 for hashes and for span / parent ids that were not hex, -1 for booleans), with
    the repeat flags resolved per span (``kf`` minus ``knp`` without params).

    Read through Arrow (the relation API), which converts in parallel: 0.23 s per 2.5 M spans against
    0.55 s for ``fetchnumpy()`` on the executed statement, which converts on one thread.
    """
    table = cur.sql(
        f"""SELECT s.tix, coalesce(s.sid, 0)::UBIGINT AS sid, coalesce(s.pid, 0)::UBIGINT AS pid, s.start_ns, s.dur_ns, ({_CAT_SQL})::UTINYINT AS cat, s.key_h,
                   coalesce(k.op_h, 0)::UBIGINT AS op_h,
                   coalesce(s.params_h, CASE WHEN k.has_literals THEN s.key_h END, hash(s.rid)) AS params_e,
                   coalesce(s.code_h, 0)::UBIGINT AS code_h,
                   CASE WHEN s.orm_rel IS NULL THEN 0 ELSE hash(s.orm_rel) END::UBIGINT AS orm_h,
                   coalesce(s.orm_uselist::TINYINT, -1)::TINYINT AS uselist,
                   coalesce(s.cache_hit::TINYINT, -1)::TINYINT AS cache_hit,
                   coalesce(k.kf & ~(CASE WHEN s.params_h IS NULL THEN k.knp ELSE 0 END)::UTINYINT, 0)::UTINYINT AS flags
            FROM th_spans s LEFT JOIN th_kk k ON k.key_h = s.key_h"""
    ).to_arrow_table()
    # each column as its record batches' pieces, read in place by the kernel (zero-copy views that
    # keep the Arrow buffers alive): one contiguous copy of a chunk cost 0.1-0.3 s, most of it
    # page faults on freshly allocated memory
    return {name: [c.to_numpy() for c in table.column(name).chunks] for name in table.column_names}


def run_chunk(cur, cfg, modules, summaries: bool, append: bool) -> None:
    """Run the kernel over the chunk's traces (``th_traces``, spans in ``th_spans``).

    ``modules``: the repeat detectors to group for (each with ``CATEGORY``, ``KEY_FILTER``, optional
    ``NEEDS_PARAMS``, and the ``grouping`` of its ``detect``); their groups are stashed exactly as
    :func:`._repeats.find_repeats` + :func:`._repeats.stash_repeats` would. ``summaries``: also gather
    the chunk's per-trace counts and times in ``th_ktr`` (``append``: add to it; the first chunk
    creates it), for :func:`finish_summaries` after the last chunk.
    Raises ``MemoryError`` if the kernel cannot allocate its buffers.
    """
    import numpy as np
    import pyarrow as pa
    from tracehound.analyzer.detectors._repeats import stash_repeats

    _key_table(cur, modules)
    cols = _fetch(cur)
    specs = []
    for i, m in enumerate(modules):
        g = m.detect.grouping
        specs.append((i, g["per_params"], g["with_source"], int(cfg.loosest(m.NAME, "min_count"))))
    # as many threads as DuckDB may use (`serve` runs it with one, next to the ingest)
    threads = int(cur.execute("SELECT current_setting('threads')").fetchall()[0][0])
    out = _kernel.run(cols, specs, threads)
    del cols
    if summaries:
        t = out["traces"]
        counts = np.frombuffer(t["counts"], np.int32).reshape(-1, 6)
        dur = np.frombuffer(t["dur"], np.int64).reshape(-1, 5)
        cov = np.frombuffer(t["cov"], np.int64).reshape(-1, 5)
        names = ["span_count", "db_count", "cache_count", "cache_hits", "cache_misses", "http_count"]
        buckets = ["db", "cache", "http", "template", "self"]
        table = pa.table(
            {
                "tix": np.frombuffer(t["tix"], np.uint64),
                **{n: counts[:, j] for j, n in enumerate(names)},
                **{f"{b}_ns": dur[:, j] for j, b in enumerate(buckets)},
                **{f"{b}_cov": cov[:, j] for j, b in enumerate(buckets)},
            }
        )
        # gathered over the chunks; :func:`finish_summaries` joins them with the traces once (one
        # INSERT of a chunk's ~0.1 M summary rows runs on one thread: less than a row group)
        cur.register("th_ktr_arrow", table)
        try:
            verb = "INSERT INTO th_ktr " if append else "CREATE OR REPLACE TEMP TABLE th_ktr AS "
            cur.execute(verb + "SELECT * FROM th_ktr_arrow")
        finally:
            cur.unregister("th_ktr_arrow")
    orm_needed = any(
        np.frombuffer(g["orm_h"], np.uint64).any() or np.frombuffer(g["src_orm_h"], np.uint64).any()
        for g in out["groups"]
    )
    if orm_needed:  # the few relationship names behind the hashes
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE th_korm AS
               SELECT DISTINCT hash(orm_rel) AS h, orm_rel FROM th_facts WHERE orm_rel IS NOT NULL"""
        )
    else:
        cur.execute("CREATE OR REPLACE TEMP TABLE th_korm (h UBIGINT, orm_rel VARCHAR)")
    for m, g in zip(modules, out["groups"], strict=True):
        _groups_tables(cur, g, m.detect.grouping)
        stash_repeats(cur, m.NAME)
    cur.execute("DROP TABLE IF EXISTS th_korm")
    cur.execute("DROP TABLE IF EXISTS th_kk")


def finish_summaries(cur) -> None:
    """``th_summary`` for every trace in ``th_traces`` from the per-trace rows every chunk's
    :func:`run_chunk` gathered in ``th_ktr`` (dropped)."""
    from tracehound.analyzer.summaries import SUMMARY_FROM_KERNEL_SQL

    cur.execute(
        "CREATE OR REPLACE TEMP TABLE th_summary AS " + SUMMARY_FROM_KERNEL_SQL.format(kernel="th_ktr")
    )
    cur.execute("DROP TABLE th_ktr")


def _groups_tables(cur, g: dict, grouping: dict) -> None:
    """``th_cand`` and ``th_src`` (the columns :func:`._repeats.find_repeats` documents) from one
    spec's kernel output ``g``."""
    import numpy as np
    import pyarrow as pa
    from tracehound.analyzer.detectors._common import hex_sid

    lens = np.frombuffer(g["ids_len"], np.int32)
    offsets = np.zeros(len(lens) + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    u64 = {
        k: np.frombuffer(g[k], np.uint64)
        for k in ("tix", "op_h", "code_h", "orm_h", "first_pid", "first_sid")
    }
    i64 = {
        k: np.frombuffer(g[k], np.int64)
        for k in ("n", "n_distinct", "total_ns", "max_ns", "first_start", "last_end")
    }
    table = pa.table(
        {
            **u64,
            **i64,
            "uselist": np.frombuffer(g["uselist"], np.int8),
            "span_ids": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(np.frombuffer(g["ids"], np.uint64))
            ),
        }
    )
    source = grouping["with_source"]
    n_distinct = "1" if grouping["per_params"] else "c.n_distinct"
    orm = (
        """o.orm_rel, CASE c.uselist WHEN 1 THEN true WHEN 0 THEN false END AS orm_uselist,
           c.first_pid, c.first_sid"""
        if source
        else "NULL::VARCHAR AS orm_rel, NULL::BOOLEAN AS orm_uselist, NULL::UBIGINT AS first_pid, NULL::UBIGINT AS first_sid"
    )
    cur.register("th_kcand_arrow", table)
    try:
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE th_cand AS
                SELECT c.tix, c.op_h, c.n, {n_distinct} AS n_distinct, c.total_ns::HUGEINT AS total_ns,
                       c.max_ns, c.first_start, c.last_end, c.span_ids, nullif(c.code_h, 0) AS code_h, {orm}
                FROM th_kcand_arrow c LEFT JOIN th_korm o ON o.h = c.orm_h AND c.orm_h <> 0"""
        )
    finally:
        cur.unregister("th_kcand_arrow")
    if not source:
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE th_src (tix UBIGINT, op_h UBIGINT, first_sid UBIGINT,
               source_norm VARCHAR, source_sid VARCHAR, source_rel VARCHAR, source_uselist BOOLEAN)"""
        )
        return
    has = np.frombuffer(g["src_has"], np.uint8).astype(bool)
    src = pa.table(
        {
            "tix": u64["tix"][has],
            "op_h": u64["op_h"][has],
            "first_sid": u64["first_sid"][has],
            "key_h": np.frombuffer(g["src_key_h"], np.uint64)[has],
            "sid": np.frombuffer(g["src_sid"], np.uint64)[has],
            "orm_h": np.frombuffer(g["src_orm_h"], np.uint64)[has],
            "uselist": np.frombuffer(g["src_uselist"], np.int8)[has],
        }
    )
    cur.register("th_ksrc_arrow", src)
    try:
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE th_src AS
                SELECT s.tix, s.op_h, s.first_sid, k.norm AS source_norm, {hex_sid("s.sid")} AS source_sid,
                       o.orm_rel AS source_rel,
                       CASE s.uselist WHEN 1 THEN true WHEN 0 THEN false END AS source_uselist
                FROM th_ksrc_arrow s JOIN th_keys k ON k.key_h = s.key_h
                LEFT JOIN th_korm o ON o.h = s.orm_h AND s.orm_h <> 0"""
        )
    finally:
        cur.unregister("th_ksrc_arrow")
