"""Parity with a peer: run Sentry's performance-detector fixtures through tracehound's analyzer.

    python bench/sentry_parity.py [--fixtures DIR] [--json]

Each fixture in ``../shared/benchmarks/sentry-fixtures`` (or ``--fixtures`` /
``$TRACEHOUND_SENTRY_FIXTURES``) is converted into ``otel_traces`` rows (``sentry_convert.py``), inserted
into its own fresh DuckDB file, and analysed with :func:`tracehound.analyzer.analyze`. For the detectors
both products have (Sentry -> tracehound: N+1 DB -> ``n_plus_one_query``, N+1 API -> ``n_plus_one_http``,
slow DB -> ``slow_query``, consecutive HTTP -> ``consecutive_http``) the script compares the NUMBER of
problems Sentry's tests expect (``EXPECTED.md``, the synthetic fixtures' ``_expected``) with the number
of tracehound findings of that kind. Fixtures of Sentry-only detectors (MN+1, consecutive DB, HTTP/1.1
overhead) are listed as "not shared".

Where Sentry's tests use non-default thresholds, the same thresholds are passed as analyzer ``config``
(``n_plus_one_db_duration_threshold`` -> ``detectors.n_plus_one_query.min_total_ms``).

Deliberate differences live in :data:`DELIBERATE_DIFFERENCES` (fixture -> reason): the only place to
document them (the README copies it). The exit status is 1 when a shared fixture disagrees and is not
listed there, or when a listed one agrees (the list must not go stale). Disagreements that are bugs
still to fix in the analyzer are listed in :data:`KNOWN_ANALYZER_ISSUES` (shown as "analyzer issue",
also exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sentry_convert import insert_event, load_event  # noqa: E402

#: ``$TRACEHOUND_SENTRY_FIXTURES``, else ``shared/benchmarks/sentry-fixtures`` beside the checkout
#: (where the project's shared folder lives, in development and in CI).
DEFAULT_FIXTURES = Path(
    os.environ.get(
        "TRACEHOUND_SENTRY_FIXTURES",
        Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks" / "sentry-fixtures",
    )
)

#: Sentry detector -> tracehound finding kind (None: Sentry-only detector, not shared).
DETECTORS = {
    "NPlusOneDB": "n_plus_one_query",
    "NPlusOneAPI": "n_plus_one_http",
    "SlowDB": "slow_query",
    "ConsecutiveHTTP": "consecutive_http",
    "ConsecutiveDB": None,
    "MNPlusOneDB": None,
    "HTTPOverhead": None,
}

NPLUS1_MS = "detectors.n_plus_one_query.min_total_ms"


@dataclass
class Case:
    """One comparison: a fixture (path relative to the fixtures folder) under one Sentry detector."""

    fixture: str
    detector: str
    expected: int  # problems Sentry's tests expect
    config: dict = field(default_factory=dict)  # dotted key -> value, e.g. {NPLUS1_MS: 0}
    note: str = ""

    @property
    def label(self) -> str:
        extra = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.config.items())
        return f"{self.fixture}" + (f" [{extra}]" if extra else "")

    @property
    def key(self) -> str:
        """``label`` + detector: the key of DELIBERATE_DIFFERENCES and KNOWN_ANALYZER_ISSUES."""
        return f"{self.label} {self.detector}"


#: Real events: expectations transcribed from EXPECTED.md (assertions in Sentry's tests; "derived"
#: marks rows EXPECTED.md derived from sibling fixtures).
REAL_CASES = [
    Case("n-plus-one-db/n-plus-one-in-django-index-view.json", "NPlusOneDB", 1),
    Case(
        "n-plus-one-db/n-plus-one-in-django-index-view.json",
        "NPlusOneDB",
        0,
        {NPLUS1_MS: 100000.0},
        "project threshold n_plus_one_db_duration_threshold=100000",
    ),
    Case(
        "n-plus-one-db/n-plus-one-in-django-index-view.json",
        "SlowDB",
        1,
        note="derived: 2000 s timestamp typo",
    ),
    Case("n-plus-one-db/n-plus-one-in-django-index-view.json", "MNPlusOneDB", 0),
    Case("n-plus-one-db/n-plus-one-in-django-index-view-unparameterized.json", "NPlusOneDB", 1),
    Case("n-plus-one-db/n-plus-one-in-django-index-view-activerecord.json", "NPlusOneDB", 1),
    Case("n-plus-one-db/parallel-n-plus-one-in-django-index-view.json", "NPlusOneDB", 1),
    Case("n-plus-one-db/n-plus-one-in-django-index-view-source-redis.json", "NPlusOneDB", 0),
    Case("n-plus-one-db/n-plus-one-in-django-index-view-repeating-redis.json", "NPlusOneDB", 0),
    Case("n-plus-one-db/fast-n-plus-one-in-django-new-view.json", "NPlusOneDB", 0),
    Case("n-plus-one-db/query-waterfall-in-django-random-view.json", "NPlusOneDB", 0),
    Case("n-plus-one-db/query-waterfall-in-django-random-view.json", "ConsecutiveDB", 0),
    Case("n-plus-one-db/n-plus-one-in-django-with-odd-db-sources.json", "NPlusOneDB", 0),
    Case(
        "n-plus-one-db/n-plus-one-in-django-with-odd-db-sources.json",
        "NPlusOneDB",
        1,
        {NPLUS1_MS: 0.0},
        "duration_threshold=0",
    ),
    Case("n-plus-one-db/n-plus-one-db-root-parent-span.json", "NPlusOneDB", 1),
    Case("n-plus-one-db/n-plus-one-in-django-new-view-truncated-duplicates.json", "NPlusOneDB", 0),
    Case("n-plus-one-db/n-plus-one-in-django-new-view-updates.json", "NPlusOneDB", 1, note="derived"),
    Case("n-plus-one-db/n-plus-one-in-mssql.json", "NPlusOneDB", 1, note="derived"),
    Case("n-plus-one-db/n-plus-one-in-rails-index-view.json", "NPlusOneDB", 0, note="derived"),
    Case("slow-db/solved-n-plus-one-in-django-index-view.json", "SlowDB", 1),
    Case("slow-db/solved-n-plus-one-in-django-index-view.json", "NPlusOneDB", 0),
    Case("slow-db/slow-db-spans.json", "SlowDB", 1),
    Case("slow-db/slow-select-query.json", "SlowDB", 2, note="derived"),
    Case("span_first/slow-db-solved-n-plus-one.json", "SlowDB", 1),
    Case("m-n-plus-one-db/m-n-plus-one-graphql.json", "MNPlusOneDB", 1),
    Case("m-n-plus-one-db/m-n-plus-one-graphql-truncated.json", "MNPlusOneDB", 0),
    Case("m-n-plus-one-db/m-n-plus-one-graphql-transaction-parent.json", "MNPlusOneDB", 0),
    Case("m-n-plus-one-db/m-n-plus-one-redis.json", "MNPlusOneDB", 0),
    Case("m-n-plus-one-db/m-n-plus-one-mostly-http.json", "MNPlusOneDB", 0),
    Case("m-n-plus-one-db/m-n-plus-one-prisma-client-different-descriptions.json", "MNPlusOneDB", 1),
    Case("consecutive-http/consecutive-http-basic.json", "ConsecutiveHTTP", 1),
    Case(
        "n-plus-one-api-calls/n-plus-one-api-calls-in-weather-app.json",
        "NPlusOneAPI",
        1,
        note="current Sentry; 2022-23 versions expected none",
    ),
    Case("http-overhead/http-overhead-filtered-url.json", "HTTPOverhead", 0),
]

#: ``Case.key`` (fixture [config] detector) -> why tracehound deliberately differs from Sentry there.
DELIBERATE_DIFFERENCES: dict[str, str] = {
    "n-plus-one-db/n-plus-one-in-django-index-view-source-redis.json NPlusOneDB": (
        "Sentry only reports an N+1 whose rows came from a preceding SQL query (here the ids come from "
        "a redis command); tracehound reports 10 single-row queries with distinct parameters under one "
        "parent wherever the ids came from, and names a source query only where there is one (issue 4)."
    ),
    "n-plus-one-db/n-plus-one-in-rails-index-view.json NPlusOneDB": (
        "tracehound normalises literals before grouping, so the Rails N+1 written with inline ids "
        "(`WHERE id = 396 LIMIT 1`, ...) is one statement run 10x with 10 different literal parameters: an "
        "N+1. Sentry's old span hashes kept the literals and saw 10 different queries."
    ),
    "n-plus-one-db/n-plus-one-in-django-index-view-unparameterized.json NPlusOneDB": (
        "all 10 repeats are literally `... WHERE id = 1 LIMIT 21`: the same statement with the same "
        "parameters, which tracehound reports as `repeated_query` (cache or hoist it), not as an N+1."
    ),
    "n-plus-one-db/n-plus-one-in-django-with-odd-db-sources.json NPlusOneDB": (
        "20 repeats in 2.4 ms are below the 50 ms threshold; tracehound still reports them at LOW "
        "severity because the count is high (>= 20): a fast local database hides what a networked one "
        "will cost (issue 4)."
    ),
    "synthetic/consecutive-http/browser-sdk.json ConsecutiveHTTP": (
        "Sentry ignores browser-SDK events; tracehound analyses server traces and has no browser SDK "
        "notion: three 2 s calls in a row are reported whoever made them."
    ),
    "synthetic/consecutive-http/nextjs-static-asset.json ConsecutiveHTTP": (
        "Sentry drops Next.js `/_next/static/` asset fetches (a browser concern); a Flask backend does "
        "not fetch them, so tracehound has no such filter and counts all three calls."
    ),
    "synthetic/n-plus-one-api/prefetch.json NPlusOneAPI": (
        "Sentry skips browser prefetch requests (`http.request.prefetch`), a browser-only attribute "
        "that server-side OpenTelemetry HTTP client spans never carry."
    ),
    "synthetic/n-plus-one-api/file-urls.json NPlusOneAPI": (
        "tracehound replaces numeric path segments by a placeholder even inside file names "
        "(`/clients/info/3.json` -> `/clients/info/{n}.json`), as Sentry's current real-event test "
        "(`n-plus-one-api-calls-in-weather-app`, also flagged) does; this synthetic test of Sentry's "
        "expects file-extension URLs to stay unparameterised."
    ),
}

#: Disagreements that are analyzer bugs to fix, not choices (details: bench/PARITY_NOTES.md).
#: ``tests/test_sentry_parity.py`` marks them xfail(strict): once fixed, remove them here.
KNOWN_ANALYZER_ISSUES: dict[str, str] = {}

_EXPECTED_RE = re.compile(r"^(\w+): (?:(none)|(\d+) problem)")


def synthetic_cases(root: Path) -> list[Case]:
    """Cases from ``synthetic/_expected_index.json`` (``"Detector: none"`` / ``"Detector: 1 problem"``)."""
    cases = []
    for name, text in json.loads((root / "synthetic" / "_expected_index.json").read_text()):
        m = _EXPECTED_RE.match(text)
        if not m:
            raise ValueError(f"synthetic/{name}: cannot read the expected outcome {text!r}")
        cases.append(
            Case(f"synthetic/{name}.json", m.group(1), 0 if m.group(2) else int(m.group(3)), note=text)
        )
    return cases


def all_cases(root: Path = DEFAULT_FIXTURES) -> list[Case]:
    """Every comparison, real events first. Raises ``FileNotFoundError`` for a missing fixture."""
    cases = REAL_CASES + synthetic_cases(root)
    for c in cases:
        if not (root / c.fixture).is_file():
            raise FileNotFoundError(f"fixture {root / c.fixture} is missing")
    return cases


def _config(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *path, leaf = key.split(".")
        node = out
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def run_case(case: Case, root: Path, workdir: Path) -> dict:
    """Analyse one fixture in a fresh database; returns the case and tracehound's outcome.

    Keys: ``fixture``, ``label``, ``detector``, ``kind``, ``expected``, ``got`` (number of findings of
    ``kind``, None when not shared), ``findings`` (their titles and severities), ``status``
    (``agree`` | ``disagree`` | ``deliberate`` | ``not shared`` | ``stale exception``), ``reason``.
    """
    from tracehound.analyzer import analyze
    from tracehound.collector.store import open_database

    kind = DETECTORS[case.detector]
    result = {
        "fixture": case.fixture,
        "label": case.label,
        "detector": case.detector,
        "kind": kind,
        "expected": case.expected,
        "got": None,
        "findings": [],
        "status": "not shared",
        "reason": "",
    }
    if kind is None:
        return result
    db = workdir / (re.sub(r"\W+", "_", case.label) + ".duckdb")
    con = open_database(db)
    try:
        # one cursor for the insert and the analysis (the contract: a cursor per user of ``con``)
        cur = con.cursor()
        insert_event(cur, load_event(root / case.fixture), case.fixture)
        found = [f for f in analyze(cur, config=_config(case.config)) if f["kind"] == kind]
        cur.close()
    finally:
        con.close()
    result["got"] = len(found)
    result["findings"] = [f"{f['severity']}: {f['title']}" for f in found]
    agree = len(found) == case.expected
    reason = DELIBERATE_DIFFERENCES.get(case.key)
    known = KNOWN_ANALYZER_ISSUES.get(case.key)
    if reason is not None:
        result["status"], result["reason"] = ("stale exception" if agree else "deliberate"), reason
    elif known is not None and not agree:
        result["status"], result["reason"] = "analyzer issue", known
    else:
        result["status"] = "agree" if agree else "disagree"
    return result


def run_all(root: Path = DEFAULT_FIXTURES) -> list[dict]:
    """Run every case (see :func:`run_case`) in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="th-parity-") as tmp:
        return [run_case(c, root, Path(tmp)) for c in all_cases(root)]


def _outcome(n: int | None) -> str:
    return "-" if n is None else ("none" if n == 0 else f"{n} problem{'s' if n > 1 else ''}")


def print_table(results: list[dict], out=sys.stdout) -> None:
    """The parity table and the agreement count."""
    w = max(len(r["label"]) for r in results)
    print(f"{'fixture':{w}}  {'detector':15}  {'sentry':10}  {'tracehound':10}  result", file=out)
    for r in results:
        print(
            f"{r['label']:{w}}  {r['detector']:15}  {_outcome(r['expected']):10}  {_outcome(r['got']):10}  "
            f"{r['status']}",
            file=out,
        )
    shared = [r for r in results if r["kind"]]
    agree = sum(r["status"] == "agree" for r in shared)
    deliberate = sum(r["status"] == "deliberate" for r in shared)
    print(
        f"\nshared-detector cases: {len(shared)}; agree {agree}/{len(shared)}; deliberate differences "
        f"{deliberate}; known analyzer issues {sum(r['status'] == 'analyzer issue' for r in shared)}; "
        f"unexplained disagreements {sum(r['status'] == 'disagree' for r in shared)}; "
        f"not shared {len(results) - len(shared)}",
        file=out,
    )
    for r in shared:
        if r["status"] in ("deliberate", "disagree", "stale exception", "analyzer issue"):
            print(
                f"  {r['status']}: {r['label']} ({r['detector']}): {r['reason'] or '; '.join(r['findings'])}",
                file=out,
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="Sentry fixtures folder")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not (args.fixtures / "EXPECTED.md").is_file():
        parser.exit(
            2,
            f"error: {args.fixtures} is not the Sentry fixtures folder (no EXPECTED.md); "
            "pass --fixtures DIR\n",
        )
    results = run_all(args.fixtures)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_table(results)
    bad = [r for r in results if r["status"] in ("disagree", "stale exception", "analyzer issue")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
