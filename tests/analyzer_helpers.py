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


@pytest.fixture(params=["kernel", "sql"])
def analyzer_path(request, monkeypatch):
    """Run the test on both paths of the per-trace phase: the C kernel and the SQL statements
    (:mod:`tracehound.analyzer.kernel`). Modules whose detectors' results both paths compute use it
    as ``pytestmark = pytest.mark.usefixtures("analyzer_path")``. Without the built kernel its runs
    skip, except under ``CI=true``, where they fail (CI builds it)."""
    import os

    from tracehound.analyzer import kernel

    if request.param == "sql":
        monkeypatch.setenv("TRACEHOUND_ANALYZER_KERNEL", "sql")
        assert not kernel.available()
    else:
        monkeypatch.delenv("TRACEHOUND_ANALYZER_KERNEL", raising=False)
        if not kernel.available():
            if os.environ.get("CI") == "true":
                pytest.fail("the analyzer's C kernel (_kernel.c) was not built")
            pytest.skip("the analyzer's C kernel (_kernel.c) was not built (no C compiler at install)")
    return request.param
