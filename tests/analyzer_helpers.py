"""Fixtures shared by the analyzer tests: a real DuckDB file with the tracehound schema."""

from __future__ import annotations

import pytest


@pytest.fixture
def db(tmp_path):
    from tracehound.collector.store import open_database

    con = open_database(tmp_path / "th.duckdb")
    yield con
    con.close()


def by_kind(findings, kind):
    return [f for f in findings if f["kind"] == kind]
