"""DDL for the analyzer's tables: findings, their occurrences, per-trace summaries, and state.

These tables are the contract between the analyzer (writer) and the API and weekly report (readers).

``findings``: one row per problem, keyed by a stable fingerprint (see ARCHITECTURE.md "Findings").
  ``id`` is the first 16 hex chars of ``fingerprint`` (itself the sha256 hex of the canonical key
  ``kind, service, endpoint, pattern``), so the same problem keeps its id across runs and restarts.
  ``severity`` is ``'low' | 'medium' | 'high'``. ``endpoint`` is the ``http.route`` of the root server
  span (``''`` when the trace has none). ``impact_ms`` is the estimated time wasted, summed over all
  occurrences. ``evidence`` is kind-specific JSON. ``code_*`` is the most common code location.

``finding_occurrences``: one row per (finding, trace) with that trace's share of the problem;
  the API filters findings by time window by aggregating these. ``span_ids`` are the offending spans,
  highlighted in the waterfall, as UBIGINT (the 8-byte OTLP span id; ``printf('%016x', id)`` gives
  the hex of ``otel_traces."SpanId"``). Version 1-3 stored them as hex VARCHARs; writing 6 M hex strings
  took 1.6 s of a full analysis of 10 M spans, the integers 0.1 s.

``trace_summaries``: one row per analysed trace (the root server span plus its descendants):
  latency, error flag and an exclusive-time breakdown. Feeds ``/api/endpoints``, ``slow_endpoint`` and
  the weekly report. Time columns are nanoseconds; ``*_count`` are span counts.

``analyzer_state``: key/value watermarks of the incremental analyzer.
"""

from __future__ import annotations

from tracehound.analyzer.derive import SPAN_CODE_DDL, SPAN_FACTS_DDL, SPAN_KEYS_DDL
from tracehound.collector.schema import check_and_migrate

ANALYZER_COMPONENT = "analyzer"
ANALYZER_SCHEMA_VERSION = 4

FINDINGS_DDL = """
CREATE TABLE IF NOT EXISTS findings (
    id                VARCHAR PRIMARY KEY,
    fingerprint       VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,
    severity          VARCHAR NOT NULL,
    service           VARCHAR NOT NULL,
    endpoint          VARCHAR NOT NULL,
    title             VARCHAR NOT NULL,
    occurrences       BIGINT NOT NULL,
    first_seen        TIMESTAMP_NS NOT NULL,
    last_seen         TIMESTAMP_NS NOT NULL,
    impact_ms         DOUBLE NOT NULL,
    evidence          JSON NOT NULL,
    example_trace_ids VARCHAR[] NOT NULL,
    code_filepath     VARCHAR,
    code_lineno       INTEGER,
    code_function     VARCHAR,
    fix_hint          VARCHAR NOT NULL,
    updated_at        TIMESTAMP NOT NULL
)
"""

FINDING_OCCURRENCES_DDL = """
CREATE TABLE IF NOT EXISTS finding_occurrences (
    finding_id  VARCHAR NOT NULL,
    trace_id    VARCHAR NOT NULL,
    "timestamp" TIMESTAMP_NS NOT NULL,
    impact_ms   DOUBLE NOT NULL,
    span_count  INTEGER NOT NULL,
    duration_ms DOUBLE NOT NULL,
    span_ids    VARCHAR[] NOT NULL
)
"""

TRACE_SUMMARIES_DDL = """
CREATE TABLE IF NOT EXISTS trace_summaries (
    trace_id         VARCHAR NOT NULL,
    service          VARCHAR NOT NULL,
    endpoint         VARCHAR NOT NULL,
    http_method      VARCHAR NOT NULL,
    http_status_code INTEGER,
    start            TIMESTAMP_NS NOT NULL,
    duration_ns      BIGINT NOT NULL,
    is_error         BOOLEAN NOT NULL,
    span_count       INTEGER NOT NULL,
    db_count         INTEGER NOT NULL,
    db_ns            BIGINT NOT NULL,
    cache_count      INTEGER NOT NULL,
    cache_hits       INTEGER NOT NULL,
    cache_misses     INTEGER NOT NULL,
    cache_ns         BIGINT NOT NULL,
    http_count       INTEGER NOT NULL,
    http_ns          BIGINT NOT NULL,
    template_ns      BIGINT NOT NULL,
    self_ns          BIGINT NOT NULL
)
"""

ANALYZER_STATE_DDL = """
CREATE TABLE IF NOT EXISTS analyzer_state (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
)
"""

#: Version 2 (added by the analyzer, nothing renamed): each occurrence keeps its own code location
#: and kind-specific ``detail`` JSON (the finding shows the most common location); ``finding_patterns``
#: holds per-finding identity (kind, service, endpoint, normalised pattern) and window-level ``stats``
#: JSON of the windowed detectors (percentiles, ratios).
FINDING_PATTERNS_DDL = """
CREATE TABLE IF NOT EXISTS finding_patterns (
    finding_id VARCHAR PRIMARY KEY,
    kind       VARCHAR NOT NULL,
    service    VARCHAR NOT NULL,
    endpoint   VARCHAR NOT NULL,
    pattern    VARCHAR NOT NULL,
    stats      JSON,
    updated_at TIMESTAMP NOT NULL
)
"""

ANALYZER_MIGRATIONS = {
    1: [FINDINGS_DDL, FINDING_OCCURRENCES_DDL, TRACE_SUMMARIES_DDL, ANALYZER_STATE_DDL],
    2: [
        "ALTER TABLE finding_occurrences ADD COLUMN IF NOT EXISTS code_filepath VARCHAR",
        "ALTER TABLE finding_occurrences ADD COLUMN IF NOT EXISTS code_lineno INTEGER",
        "ALTER TABLE finding_occurrences ADD COLUMN IF NOT EXISTS code_function VARCHAR",
        "ALTER TABLE finding_occurrences ADD COLUMN IF NOT EXISTS detail JSON",
        FINDING_PATTERNS_DDL,
    ],
    # Version 3: span facts derived once per span (see analyzer/derive.py); filled lazily by the
    # next analysis (watermark analyzer_state['facts_rowid']), so the migration itself is instant.
    3: [SPAN_FACTS_DDL, SPAN_KEYS_DDL, SPAN_CODE_DDL],
    # Version 4: finding_occurrences.span_ids as UBIGINT[] (was hex VARCHAR[]), see above. Not one
    # ALTER ... SET DATA TYPE ... USING: DuckDB writes that expression to its WAL, and replaying it
    # after a crash needs the core_functions extension (list_transform), which a WAL replay tries to
    # download. Here the WAL holds only plain DDL and the UPDATE's values. The column moves last.
    4: [
        "ALTER TABLE finding_occurrences ADD COLUMN span_ids_u64 UBIGINT[]",
        "UPDATE finding_occurrences SET span_ids_u64 = "
        "list_transform(span_ids, lambda x: TRY_CAST('0x' || x AS UBIGINT))",
        "ALTER TABLE finding_occurrences DROP COLUMN span_ids",
        "ALTER TABLE finding_occurrences RENAME COLUMN span_ids_u64 TO span_ids",
        "ALTER TABLE finding_occurrences ALTER COLUMN span_ids SET NOT NULL",
    ],
}


def ensure_analyzer_schema(con) -> int:
    """Create or migrate the analyzer's tables on ``con``; returns the version found before.

    Raises :class:`tracehound.collector.schema.SchemaTooNewError` for a newer database.
    """
    return check_and_migrate(con, ANALYZER_COMPONENT, ANALYZER_SCHEMA_VERSION, ANALYZER_MIGRATIONS)
