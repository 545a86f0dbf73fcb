"""Store schema versioning (newer refused, older migrated) and the trace lookup side table."""

from __future__ import annotations

import duckdb
import pytest
from tracehound.collector.schema import (
    OTEL_TRACES_DDL,
    STORE_SCHEMA_VERSION,
    SchemaTooNewError,
)
from tracehound.collector.store import insert_span_rows, open_database, trace_time_bounds

T0 = 1_700_000_000_000_000_000


def _span(trace: str, span: str, ts: int) -> dict:
    return {"Timestamp": ts, "TraceId": trace, "SpanId": span, "SpanName": "op", "Duration": 10}


def test_newer_store_schema_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "newer.duckdb"
    open_database(db).close()
    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE tracehound_schema SET version = ? WHERE component = 'store'", [STORE_SCHEMA_VERSION + 1]
    )
    con.close()
    with pytest.raises(
        SchemaTooNewError, match=r"schema is version \d+, but this tracehound only knows up to"
    ):
        open_database(db)


def test_version_1_database_migrates_and_backfills_trace_bounds(tmp_path):
    db = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(db))  # what tracehound 0.1 (store schema 1) wrote
    con.execute("CREATE TABLE tracehound_schema (component VARCHAR PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("INSERT INTO tracehound_schema VALUES ('store', 1)")
    con.execute(OTEL_TRACES_DDL)
    con.execute(
        """INSERT INTO otel_traces SELECT make_timestamp_ns(? + i * 1000), 'aa' || i % 2, printf('%016x', i), '', '',
           'op', 'Internal', 'svc', MAP {}, '', 0, '', '', MAP {}, '', 0, MAP {}, 5, 'Unset', '', 0, 0, 0, 0, [], []
           FROM range(10) t(i)""",
        [T0],
    )
    con.close()
    con = open_database(db)
    assert con.execute("SELECT version FROM tracehound_schema WHERE component='store'").fetchone() == (
        STORE_SCHEMA_VERSION,
    )
    assert con.execute("SELECT count(*) FROM otel_traces").fetchone() == (10,)
    start, end = trace_time_bounds(con, "aa1")
    assert (start.timestamp(), end.timestamp()) == pytest.approx(((T0 + 1000) / 1e9, (T0 + 9000) / 1e9))
    assert trace_time_bounds(con, "nope") is None
    con.close()
    open_database(db).close()  # already current: opens without migrating again


def test_trace_bounds_cover_every_span_of_a_trace_across_inserts(tmp_path):
    con = open_database(tmp_path / "b.duckdb")
    insert_span_rows(con, [_span("t1", "01", T0 + 500), _span("t2", "02", T0 + 600)])
    insert_span_rows(con, [_span("t1", "03", T0 + 100), _span("t1", "04", T0 + 9_000_000)])
    bounds = trace_time_bounds(con, "t1")
    rows = con.execute(
        'SELECT "SpanId" FROM otel_traces WHERE "TraceId" = $1 AND "Timestamp" BETWEEN $2 AND $3 ORDER BY 1',
        ["t1", *bounds],
    ).fetchall()
    assert rows == [("01",), ("03",), ("04",)]
    con.close()
