"""The shared "same operation repeated in one request" search behind the N+1 and repeat detectors.

Grouping key: (trace, *anchor*, normalised operation). The anchor of a span is its parent, except
when that parent is itself one iteration of a loop (an internal or template span whose name occurs
two or more times under the same parent): then it is the grandparent. That is how a nested N+1 (a
loop inside a loop, each iteration wrapped in its own span) is seen as one run instead of many runs
of one. Spans between the repeats do not matter (grouping, not adjacency), nor does overlap
(parallel repeats are counted like sequential ones).

Parameters: ``tracehound.db.params_hash`` when present; raw SQL with literals counts its literal
text as the parameters; otherwise every execution is assumed to have distinct parameters.
"""

from __future__ import annotations

from ._common import config_table, hex_sid, route_keys, temp_tables

#: Iteration spans: internal/template spans whose name occurs 2+ times under their parent. Counted
#: by one GROUP BY on a single 64-bit key and kept by a semi-join (cheaper than a window count
#: partitioned by the three columns: 0.035 vs 0.055 s for 1 M spans).
ANCHOR_SQL = """
CREATE OR REPLACE TEMP TABLE th_anchor AS
WITH it AS (
    SELECT tix, sid, pid, hash(tix, pid, key_h) AS g FROM th_spans
    WHERE cat IN ('other', 'template') AND pid <> 0
)
SELECT tix, sid, pid AS anchor FROM it SEMI JOIN (SELECT g FROM it GROUP BY g HAVING count(*) >= 2) USING (g)
"""


def key_filters(module) -> tuple[str, str]:
    """SQL over a ``span_keys`` row ``k``: whether ``module`` (a repeat detector) groups spans of that
    operation (its ``CATEGORY`` and ``KEY_FILTER``), and whether such a span also needs a
    ``tracehound.db.params_hash`` (its ``NEEDS_PARAMS``; ``false`` when it declares none). Both
    paths of the per-trace phase (:func:`build_anchors`, :mod:`tracehound.analyzer.kernel`) use it."""
    return (
        f"(k.cat = '{module.CATEGORY}' AND ({module.KEY_FILTER}))",
        f"({getattr(module, 'NEEDS_PARAMS', 'false')})",
    )


def build_anchors(cur, modules) -> None:
    """Create ``th_anchor`` (iteration spans -> the span that holds the loop) and ``th_rep``: ONE
    narrow row per span that any of the repeat detectors ``modules`` looks at, with a boolean column
    per detector (named after it) saying whether that detector groups the span. One pass over the
    spans serves all of them (``n_plus_one_query`` and ``repeated_query`` read the same DB spans).

    Each module declares ``CATEGORY`` (span category), ``KEY_FILTER`` (SQL over the operation's
    ``span_keys`` row ``k``: evaluated once per distinct operation, never per span) and optionally
    ``NEEDS_PARAMS`` (SQL over ``k``: the span then also needs a ``tracehound.db.params_hash``).

    Columns: tix, sid, pid, start_ns, dur_ns, op_h, code_h, orm_rel, orm_uselist,
    params_e (``tracehound.db.params_hash``; else the literal text's key for raw SQL with literals;
    else unique per span: unknown parameters are taken as distinct), the group keys
    ``gk_anchor = hash(tix, anchor, op_h)`` and ``gk_params = hash(tix, op_h, params_e)``, and the flags.
    """
    cur.execute(ANCHOR_SQL)
    key_flags = ", ".join(
        f"{key_filters(m)[0]} AS {m.NAME}, {key_filters(m)[1]} AS {m.NAME}_np" for m in modules
    )
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE th_rkeys AS SELECT * FROM (
                SELECT k.key_h, k.op_h, k.has_literals, {key_flags} FROM th_keys k
            ) WHERE {" OR ".join(m.NAME for m in modules)}"""
    )
    flags = ", ".join(
        f"k.{m.NAME} AND (NOT k.{m.NAME}_np OR s.params_h IS NOT NULL) AS {m.NAME}" for m in modules
    )
    # One 64-bit group key instead of three columns: DuckDB aggregates and joins on a single UBIGINT
    # several times faster than on a composite key (a collision needs 2^32 groups to be likely).
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE th_rep AS
        SELECT hash(tix, anchor, op_h) AS gk_anchor, hash(tix, op_h, params_e) AS gk_params,
               * EXCLUDE (anchor) FROM (
            SELECT s.tix, s.sid, s.pid, coalesce(a.anchor, s.pid) AS anchor, s.start_ns, s.dur_ns,
                   k.op_h, s.code_h, s.orm_rel, s.orm_uselist,
                   coalesce(s.params_h, CASE WHEN k.has_literals THEN s.key_h END, hash(s.rid)) AS params_e,
                   {flags}
            FROM th_spans s JOIN th_rkeys k ON k.key_h = s.key_h
            LEFT JOIN th_anchor a ON a.tix = s.tix AND a.sid = s.pid
        ) WHERE {" OR ".join(m.NAME for m in modules)}
        """
    )


def find_repeats(
    cur, kind: str, min_distinct: int, *, per_params: bool = False, with_source: bool = False
) -> None:
    """Groups of the spans of ``th_rep`` flagged for ``kind`` doing the same operation in one trace
    (see module doc), into the TEMP table ``th_cand`` (nothing goes through Python).

    ``per_params=False``: key (trace, anchor, op) and keep groups with at least ``min_distinct``
    distinct parameter sets. ``per_params=True``: key (trace, op, parameters) over the whole trace and
    keep groups run at least ``min_distinct`` times. ``th_cand`` columns: tix, op_h, n, n_distinct,
    total_ns, max_ns, first_start, last_end, span_ids (UBIGINT[], ascending), code_h, and (NULL unless
    ``with_source``) orm_rel, orm_uselist, first_pid, first_sid. ``th_src`` (empty unless ``with_source``): per group
    (tix, op_h, first_sid) its source_norm, source_sid, and source_rel / source_uselist (the ORM
    lazy load the source span itself was, if any). :func:`emit_repeats` turns the groups that pass a
    detector's thresholds into occurrences.
    """
    gk = "gk_params" if per_params else "gk_anchor"
    # every span of a per-params group has the same parameters
    n_distinct = "1" if per_params else "count(DISTINCT d.params_e)"
    having = "count(*)" if per_params else n_distinct
    # the ORM and first-span columns only feed the source search and the N+1 query detail
    orm = (
        """mode(d.orm_rel) AS orm_rel, bool_or(d.orm_uselist) AS orm_uselist,
           arg_min(d.pid, d.start_ns) AS first_pid, arg_min(d.sid, d.start_ns) AS first_sid"""
        if with_source
        else "NULL::VARCHAR AS orm_rel, NULL::BOOLEAN AS orm_uselist, NULL::UBIGINT AS first_pid, NULL::UBIGINT AS first_sid"
    )
    # Phase 1: cheap counts on the single key (most groups are too small); phase 2: the distinct
    # parameters and the heavy aggregates (lists, modes) only for the groups left. The span ids are
    # a set (the waterfall highlights them): sorted by value, which costs a third of an ordered
    # aggregate by start time (0.04 vs 0.11 s per 1.3 M spans).
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE th_cand AS
        WITH g0 AS (SELECT {gk} FROM th_rep WHERE {kind} GROUP BY {gk} HAVING count(*) >= ?),
        d AS (SELECT * FROM th_rep SEMI JOIN g0 USING ({gk}) WHERE {kind})
        SELECT any_value(d.tix) AS tix, any_value(d.op_h) AS op_h, count(*) AS n,
               {n_distinct} AS n_distinct,
               sum(d.dur_ns) AS total_ns, max(d.dur_ns) AS max_ns, min(d.start_ns) AS first_start,
               max(d.start_ns + d.dur_ns) AS last_end, list_sort(list(d.sid)) AS span_ids,
               mode(d.code_h) AS code_h, {orm}
        FROM d GROUP BY d.{gk} HAVING {having} >= ?
        """,
        [min_distinct, min_distinct],
    )
    if not with_source:
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE th_src (tix UBIGINT, op_h UBIGINT, first_sid UBIGINT,
               source_norm VARCHAR, source_sid VARCHAR, source_rel VARCHAR, source_uselist BOOLEAN)"""
        )
        return
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE th_src AS
            SELECT tix, op_h, first_sid, source_norm, source_sid, source_orm.rel AS source_rel,
                   source_orm.uselist AS source_uselist
            FROM (
                SELECT c.tix, c.op_h, c.first_sid, arg_max(k.norm, s.start_ns) AS source_norm,
                       arg_max({hex_sid("s.sid")}, s.start_ns) AS source_sid,
                       arg_max({{'rel': s.orm_rel, 'uselist': s.orm_uselist}}, s.start_ns) AS source_orm
                FROM th_cand c JOIN th_spans s ON s.tix = c.tix AND s.pid = c.first_pid AND s.cat = 'db'
                     AND s.start_ns <= c.first_start AND s.sid <> c.first_sid
                JOIN th_keys k ON k.key_h = s.key_h AND k.op_h <> c.op_h
                GROUP BY c.tix, c.op_h, c.first_sid
            )"""
    )


def _stashed(cur, prefix: str) -> list[str]:
    """Names of the tables ``<prefix>_0``, ``<prefix>_1``, ... (chunk order)."""
    names = [n for n in temp_tables(cur, prefix + "_") if n.rsplit("_", 1)[1].isdigit()]
    return sorted(names, key=lambda name: int(name.rsplit("_", 1)[1]))


def stash_repeats(cur, kind: str) -> None:
    """Keep the groups :func:`find_repeats` found in this chunk for :func:`emit_repeats` after the
    last chunk: ``th_cand`` and ``th_src`` are renamed ``th_stash_<kind>_<n>`` and
    ``th_stsrc_<kind>_<n>`` (no copy: the span-id lists are large).

    Emitting once over all chunks' groups instead of once per chunk lets DuckDB spread the work over
    its threads (it splits a scan by row groups of 122,880 rows; one chunk's groups fit in one) and
    pays the joins' fixed costs once.
    """
    n = len(_stashed(cur, f"th_stash_{kind}"))
    cur.execute(f"ALTER TABLE th_cand RENAME TO th_stash_{kind}_{n}")
    cur.execute(f"ALTER TABLE th_src RENAME TO th_stsrc_{kind}_{n}")


def emit_repeats(cur, cfg, kind: str, impact: str, keep: str, detail: str | None) -> int:
    """Append to ``th_occ`` one occurrence per stashed group (:func:`stash_repeats`) that passes
    ``keep``, and drop the stash.

    ``impact``, ``keep`` and ``detail`` are SQL over the group ``c`` (``th_cand`` plus ``service``,
    ``endpoint``, ``norm`` and the ``th_src`` columns) and its route's thresholds ``g`` (``th_cfg``,
    see :func:`._common.config_table`): ``impact`` the time the run wastes in that trace (ns; stored
    as ``impact_ms``), ``keep`` the detector's rule, ``detail`` a STRUCT (stored as JSON) with the
    kind-specific part its ``describe()`` reads back (``None``: no detail beyond the finding's own
    pattern, the normalised operation every occurrence shares). Span ids stay UBIGINT (``th_occ.sids``).
    Returns the number of occurrences appended (0 when no chunk stashed anything).
    """
    cands, srcs = _stashed(cur, f"th_stash_{kind}"), _stashed(cur, f"th_stsrc_{kind}")
    if not cands:
        return 0
    config_table(cur, cfg, kind)
    route_keys(cur)
    # a trace belongs to one chunk, so its groups' source rows are in that chunk's th_src; the groups
    # meet their route as its integer key (th_trace_rk), its strings and thresholds (th_routes x
    # th_cfg, a few rows) only at the end
    cand = " UNION ALL ".join(f"SELECT * FROM {name}" for name in cands)
    src = " UNION ALL ".join(f"SELECT * FROM {name}" for name in srcs)
    n = cur.execute(
        f"""INSERT INTO th_occ
            SELECT ?, g.service, g.endpoint, c.norm, c.tix, th_ms({impact}), c.n, th_ms(c.total_ns),
                   NULL, c.code_h, {"'{}'" if detail is None else f"to_json({detail})::VARCHAR"}, c.span_ids
            FROM (SELECT t.rk, k.norm, c.*, src.* EXCLUDE (tix, op_h, first_sid)
                  FROM ({cand}) c JOIN th_trace_rk t ON t.tix = c.tix
                  JOIN (SELECT DISTINCT op_h, norm FROM th_keys) k ON k.op_h = c.op_h
                  LEFT JOIN ({src}) src
                       ON src.tix = c.tix AND src.op_h = c.op_h AND src.first_sid = c.first_sid) c
            JOIN (SELECT r.rk, g.* FROM th_cfg g JOIN th_routes r USING (service, endpoint)) g
                 ON g.rk = c.rk
            WHERE g.enabled AND ({keep})""",
        [kind],
    ).fetchall()[0][0]
    for name in (*cands, *srcs):
        cur.execute(f'DROP TABLE "{name}"')
    return n


def repeat_detector(
    name: str,
    *,
    impact: str,
    keep: str,
    detail: str | None = None,
    per_params: bool = False,
    with_source: bool = False,
):
    """The ``(detect, finish)`` pair of a repeat detector (see :mod:`tracehound.analyzer.detectors`).

    ``detect(cur, cfg) -> None`` runs :func:`find_repeats` (with ``per_params``/``with_source``, at
    the loosest ``min_count`` of any route) on one chunk and :func:`stash_repeats`;
    ``finish(cur, cfg) -> int`` runs :func:`emit_repeats` with ``impact``, ``keep`` and ``detail``
    over every chunk's candidates and returns the number of occurrences appended to ``th_occ``.
    """

    def detect(cur, cfg) -> None:
        find_repeats(
            cur, name, cfg.loosest(name, "min_count"), per_params=per_params, with_source=with_source
        )
        stash_repeats(cur, name)

    def finish(cur, cfg) -> int:
        return emit_repeats(cur, cfg, name, impact=impact, keep=keep, detail=detail)

    detect.__doc__ = f"Find the {name} candidate groups of this chunk's traces (``th_traces``)."
    # how the groups are keyed, for the per-trace kernel (tracehound.analyzer.kernel), which groups
    # every repeat detector's spans in one pass instead of calling detect()
    detect.grouping = {"per_params": per_params, "with_source": with_source}
    finish.__doc__ = f"Append the {name} occurrences of every chunk's candidates to ``th_occ``."
    return detect, finish
