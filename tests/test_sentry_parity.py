"""Sentry parity: every shared-detector fixture agrees with Sentry's expected outcome, except the
documented deliberate differences (``bench/sentry_parity.py`` DELIBERATE_DIFFERENCES).

Each case converts a real Sentry fixture into spans in a real DuckDB file and runs the real
analyzer. Known analyzer bugs (KNOWN_ANALYZER_ISSUES) are strict xfails: fixing one makes the test
fail until it is removed from the list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import sentry_parity  # noqa: E402
from sentry_convert import convert_event, load_event  # noqa: E402

ROOT = sentry_parity.DEFAULT_FIXTURES
if not (ROOT / "EXPECTED.md").is_file():  # pragma: no cover - the fixtures live outside the repo
    message = f"Sentry fixtures not found at {ROOT} (set TRACEHOUND_SENTRY_FIXTURES)"
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(message)  # CI must run parity, never skip it
    pytest.skip(message, allow_module_level=True)

SHARED = [c for c in sentry_parity.all_cases(ROOT) if sentry_parity.DETECTORS[c.detector]]


def _param(case):
    marks = []
    issue = sentry_parity.KNOWN_ANALYZER_ISSUES.get(case.key)
    if issue:
        marks.append(pytest.mark.xfail(strict=True, reason=issue))
    return pytest.param(case, id=f"{case.label}:{case.detector}", marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in SHARED])
def test_fixture_agrees_with_sentry(case, tmp_path):
    result = sentry_parity.run_case(case, ROOT, tmp_path)
    if case.key in sentry_parity.DELIBERATE_DIFFERENCES:
        assert result["status"] == "deliberate", f"listed as a deliberate difference but agrees now: {result}"
    else:
        assert result["status"] == "agree", result


def test_exception_lists_name_real_cases():
    labels = {c.key for c in SHARED}
    assert set(sentry_parity.DELIBERATE_DIFFERENCES) <= labels
    assert set(sentry_parity.KNOWN_ANALYZER_ISSUES) <= labels
    assert not set(sentry_parity.DELIBERATE_DIFFERENCES) & set(sentry_parity.KNOWN_ANALYZER_ISSUES)


def test_every_fixture_file_is_covered():
    files = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.json") if not p.name.startswith("_")}
    covered = {c.fixture for c in sentry_parity.all_cases(ROOT)}
    assert files == covered


def test_converter_keeps_structure_with_duplicate_span_ids():
    event = load_event(ROOT / "synthetic/consecutive-http/basic-3x2000ms.json")
    rows = convert_event(event, "basic")
    root, *children = rows
    assert root["SpanKind"] == "Server" and root["ParentSpanId"] == ""
    assert root["SpanId"] == "a" * 16  # the parent every synthetic span points to
    assert len({r["SpanId"] for r in rows}) == len(rows) == 4
    assert all(c["ParentSpanId"] == root["SpanId"] for c in children)
    assert [c["SpanAttributes"]["url.full"] for c in children] == [
        f"/api/0/organizations/endpoint{i}" for i in (1, 2, 3)
    ]
    assert {c["SpanAttributes"]["http.request.method"] for c in children} == {"GET"}
    assert [c["Duration"] for c in children] == [2_000_000_000] * 3


def test_converter_maps_db_redis_and_span_v2():
    rows = convert_event(load_event(ROOT / "slow-db/slow-db-spans.json"), "slow")
    by_id = {r["SpanId"]: r for r in rows}
    slow = by_id["481bffa126c31edd"]
    assert (
        slow["SpanKind"] == "Client"
        and slow["SpanAttributes"]["db.statement"] == "SELECT pokemon FROM pokedex"
    )
    assert round(slow["Duration"] / 1e6) == 3185
    assert by_id["2949ee0f744ca1e3"]["SpanAttributes"]["db.system"] == "redis"
    v2 = convert_event(load_event(ROOT / "span_first/slow-db-solved-n-plus-one.json"), "v2")
    assert v2[0]["SpanKind"] == "Server" and v2[0]["SpanAttributes"]["http.route"] == "/books/"
    assert any(r["SpanId"] == "a05754d3fde2db29" and r["SpanKind"] == "Client" for r in v2)
