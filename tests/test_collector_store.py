"""Store schema versioning: a newer database is refused with a clear message, older ones migrate."""

from __future__ import annotations

import duckdb
import pytest
from tracehound.collector.schema import (
    OTEL_TRACES_DDL,
    STORE_SCHEMA_VERSION,
    SchemaTooNewError,
    check_and_migrate,
)
from tracehound.collector.store import insert_span_rows, open_database

T0 = 1_700_000_000_000_000_000


def _store_version(con) -> int:
    return con.execute("SELECT version FROM tracehound_schema WHERE component = 'store'").fetchone()[0]


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


def _v1_database(db) -> None:
    """What tracehound with store schema 1 wrote: otel_traces and 10 spans."""
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE tracehound_schema (component VARCHAR PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("INSERT INTO tracehound_schema VALUES ('store', 1)")
    con.execute(OTEL_TRACES_DDL)
    con.execute(
        """INSERT INTO otel_traces SELECT make_timestamp_ns(? + i * 1000), 'aa' || i % 2, printf('%016x', i), '', '',
           'op', 'Internal', 'svc', MAP {}, '', 0, '', '', MAP {}, '', 0, MAP {'k': 'v'}, 5, 'Unset', '', 0, 0, 0, 0,
           [], [] FROM range(10) t(i)""",
        [T0],
    )
    con.close()


def test_version_1_database_migrates_with_its_spans(tmp_path):
    db = tmp_path / "v1.duckdb"
    _v1_database(db)
    con = open_database(db)
    assert _store_version(con) == STORE_SCHEMA_VERSION
    assert con.execute('SELECT count(*), count(DISTINCT "TraceId") FROM otel_traces').fetchall() == [(10, 2)]
    insert_span_rows(
        con, [{"Timestamp": T0, "TraceId": "bb", "SpanId": "01", "SpanName": "new", "Duration": 1}]
    )
    con.close()
    con = open_database(db)  # already current: opens without migrating again
    assert con.execute("SELECT count(*) FROM otel_traces").fetchone() == (11,)
    con.close()


def test_version_2_database_loses_its_trace_bounds_side_table(tmp_path):
    db = tmp_path / "v2.duckdb"
    _v1_database(db)
    con = duckdb.connect(str(db))  # what store schema 2 added
    con.execute('CREATE TABLE trace_bounds ("TraceId" VARCHAR, "Start" TIMESTAMP_NS, "End" TIMESTAMP_NS)')
    con.execute('CREATE INDEX trace_bounds_trace_id ON trace_bounds ("TraceId")')
    con.execute("UPDATE tracehound_schema SET version = 2 WHERE component = 'store'")
    con.close()
    con = open_database(db)
    assert _store_version(con) == STORE_SCHEMA_VERSION
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "trace_bounds" not in tables and "otel_traces" in tables
    assert con.execute("SELECT count(*) FROM otel_traces").fetchone() == (10,)
    con.close()


def test_migrations_run_in_order_in_one_transaction(tmp_path):
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    steps = {
        1: ["CREATE TABLE t (a INTEGER)"],
        2: ["INSERT INTO t VALUES (2)"],
        3: ["INSERT INTO t VALUES (3)"],
    }
    assert check_and_migrate(con, "demo", 1, steps) == 0
    assert check_and_migrate(con, "demo", 3, steps) == 1
    assert con.execute("SELECT list(a ORDER BY a) FROM t").fetchone() == ([2, 3],)
    broken = {**steps, 4: ["INSERT INTO t VALUES (4)", "SELECT * FROM no_such_table"]}
    with pytest.raises(duckdb.CatalogException):
        check_and_migrate(con, "demo", 4, broken)
    assert con.execute("SELECT version FROM tracehound_schema WHERE component = 'demo'").fetchone() == (3,)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (2,)  # step 4 rolled back whole


def test_analyzer_v3_hex_span_ids_migrate_to_integers(tmp_path):
    """Analyzer schema 3 stored finding span ids as hex text; 4 stores the 8-byte ids as UBIGINT."""
    from tracehound.analyzer.schema import ANALYZER_MIGRATIONS
    from tracehound.collector.schema import STORE_MIGRATIONS

    db = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(db))
    check_and_migrate(con, "store", STORE_SCHEMA_VERSION, STORE_MIGRATIONS)
    check_and_migrate(con, "analyzer", 3, {v: ANALYZER_MIGRATIONS[v] for v in (1, 2, 3)})
    hex_ids = ["00000000000000ff", "a1b2c3d4e5f60718", "ffffffffffffffff"]
    con.execute(
        "INSERT INTO finding_occurrences (finding_id, trace_id, timestamp, impact_ms, span_count, duration_ms, "
        "span_ids) VALUES ('f', 't', TIMESTAMP_NS '2026-11-01', 1.0, 3, 2.0, ?)",
        [hex_ids],
    )
    con.close()
    con = open_database(db)
    assert con.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'finding_occurrences' AND column_name = 'span_ids'"
    ).fetchone() == ("UBIGINT[]",)
    [(ids, as_hex)] = con.execute(
        "SELECT span_ids, list_transform(span_ids, lambda x: printf('%016x', x)) FROM finding_occurrences"
    ).fetchall()
    assert ids == [int(h, 16) for h in hex_ids] and as_hex == hex_ids
    con.close()


_MIGRATE_AND_DIE = r"""
import os, sys
from tracehound.collector.store import open_database
con = open_database(sys.argv[1])  # migrates the analyzer tables to the current version
con.execute("SET checkpoint_threshold = '1GB'")
con.execute("INSERT INTO finding_occurrences (finding_id, trace_id, timestamp, impact_ms, span_count, "
            "duration_ms, span_ids) VALUES ('g', 't2', TIMESTAMP_NS '2026-11-02', 1.0, 1, 2.0, [5])")
assert os.path.getsize(sys.argv[1] + ".wal") > 0
os._exit(0)  # like SIGKILL: no checkpoint, the migration is only in the WAL
"""


def test_migration_replays_from_the_wal_after_a_crash(tmp_path):
    """A crash right after migrating leaves the migration in DuckDB's WAL; reopening replays it
    offline (an ALTER ... USING list_transform(...) in the WAL needed to download an extension)."""
    import subprocess
    import sys

    from tracehound.analyzer.schema import ANALYZER_MIGRATIONS
    from tracehound.collector.schema import STORE_MIGRATIONS

    db = tmp_path / "crash.duckdb"
    con = duckdb.connect(str(db))
    check_and_migrate(con, "store", STORE_SCHEMA_VERSION, STORE_MIGRATIONS)
    check_and_migrate(con, "analyzer", 3, {v: ANALYZER_MIGRATIONS[v] for v in (1, 2, 3)})
    con.execute(
        "INSERT INTO finding_occurrences (finding_id, trace_id, timestamp, impact_ms, span_count, duration_ms, "
        "span_ids) VALUES ('f', 't', TIMESTAMP_NS '2026-11-01', 1.0, 1, 2.0, ['a1b2c3d4e5f60718'])"
    )
    con.close()
    done = subprocess.run([sys.executable, "-c", _MIGRATE_AND_DIE, str(db)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    con = open_database(db)
    assert con.execute(
        "SELECT finding_id, list_transform(span_ids, lambda x: printf('%016x', x)) FROM finding_occurrences "
        "ORDER BY 1"
    ).fetchall() == [("f", ["a1b2c3d4e5f60718"]), ("g", ["0000000000000005"])]
    con.close()
