"""The SQL that replaced per-row Python keeps its exact results: ``th_ms`` rounds like Python's
``round(ns / 1e6, 3)``, and the covered time of children equals a straightforward clipped union."""

import random

import duckdb
from tracehound.analyzer.detectors._common import MACROS, ms
from tracehound.analyzer.summaries import COVERED_SQL


def _con():
    con = duckdb.connect()
    for sql in MACROS:
        con.execute(sql)
    return con


def test_th_ms_matches_python_round_including_ties():
    rnd = random.Random(7)
    values = [0, 500, 1500, 2500, 125_000, 2_675_000, 49_999_500, -1500, 0.5]
    for _ in range(20_000):
        v = rnd.randrange(0, 10**12)
        values.append(v - v % 1000 + 500)  # exact ties at 3 decimals of a millisecond
        values.append(rnd.randrange(0, 10**13))
        n, t = rnd.randrange(1, 50), rnd.randrange(0, 10**10)
        values.append(t - t / n)  # repeated_query's impact: a fractional double
        values.append(rnd.randrange(0, 10**9) + 0.5)  # medians
    con = _con()
    got = con.execute("SELECT list(th_ms(v) ORDER BY i) FROM (SELECT unnest(?::DOUBLE[]) AS v, unnest(range(?)) AS i)",
                      [[float(v) for v in values], len(values)]).fetchall()[0][0]  # fmt: skip
    assert got == [ms(v) for v in values]
    plain = con.execute("SELECT list(round(v / 1e6, 3)) FROM unnest(?::DOUBLE[]) t(v)", [values]).fetchall()[
        0
    ][0]
    assert plain != [ms(v) for v in values]  # why the macro exists


def _covered_py(spans):
    """Reference: per trace and parent category, the union length of the children clipped to the parent."""
    by_id = {(s["tix"], s["sid"]): s for s in spans}
    children: dict = {}
    for s in spans:
        p = by_id.get((s["tix"], s["pid"])) if s["pid"] else None
        if p is None:
            continue
        lo, hi = max(s["start_ns"], p["start_ns"]), min(s["end_ns"], p["end_ns"])
        if s["end_ns"] > p["start_ns"] and s["start_ns"] < p["end_ns"]:
            children.setdefault((s["tix"], s["pid"]), []).append((lo, hi))
    out: dict = {}
    group = {"db": "db", "connect": "db", "cache": "cache", "http": "http", "template": "template"}
    for (tix, pid), ivs in children.items():
        total, end = 0, None
        for lo, hi in sorted(ivs):
            total += max(hi - max(lo, end if end is not None else lo), 0)
            end = hi if end is None else max(end, hi)
        cat = group.get(by_id[(tix, pid)]["cat"], "self")
        out.setdefault(tix, {}).setdefault(cat, 0)
        out[tix][cat] += total
    return out


def test_covered_time_equals_clipped_union_with_overlaps_and_children_outside_parents():
    rnd = random.Random(3)
    cats = ["db", "cache", "http", "template", "server", "other", "connect"]
    spans = []
    for tix in range(400):
        for sid in range(1, 30):
            start = rnd.randrange(0, 1000)
            spans.append(
                {
                    "tix": tix,
                    "sid": sid,
                    "pid": 0 if sid == 1 else rnd.randrange(1, sid),
                    "start_ns": start,
                    "end_ns": start + rnd.choice([0, rnd.randrange(0, 400)]),
                    "cat": rnd.choice(cats),
                }
            )
    con = _con()
    con.execute(
        """CREATE TEMP TABLE th_spans AS SELECT unnest(?::STRUCT(tix UBIGINT, sid UBIGINT, pid UBIGINT,
           start_ns BIGINT, end_ns BIGINT, cat VARCHAR)[], recursive := true)""",
        [spans],
    )
    con.execute(COVERED_SQL)
    got = {}
    for tix, *vals in con.execute("SELECT tix, db, cache, http, template, self FROM th_cov").fetchall():
        got[tix] = {k: v for k, v in zip(["db", "cache", "http", "template", "self"], vals, strict=True) if v}
    want = {tix: {k: v for k, v in d.items() if v} for tix, d in _covered_py(spans).items()}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}
