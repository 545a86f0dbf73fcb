"""Pydantic response models of ``/api/status`` and ``/api/reports/weekly``.

Shapes follow :func:`tracehound.analyzer.worker.analyzer_status` and
:func:`tracehound.api.report.weekly_report`; times ending in ``_ms`` are milliseconds, rates 0..1.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .models import CodeLocation


class Status(BaseModel):
    """Ingest and analyzer counters. Extra counters the analyzer adds are passed through."""

    model_config = ConfigDict(extra="allow")

    spans_total: int = Field(description="Spans stored in otel_traces.")
    traces_analyzed: int | None = Field(None, description="Traces with a trace_summaries row.")
    traces_pending: int | None = Field(None, description="Traces waiting until they are complete.")
    findings: int | None = Field(None, description="Rows of the findings table.")
    last_run_at: str | None = Field(None, description="When the analyzer last ran (ISO 8601), or null.")


class WeekTotals(BaseModel):
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None


class RouteP95(BaseModel):
    service: str
    endpoint: str
    p95_ms: float | None
    requests: int


class Headline(WeekTotals):
    previous: WeekTotals = Field(description="The same totals for the week before.")
    p95_ms_by_route: list[RouteP95]


class ReportRoute(BaseModel):
    service: str
    endpoint: str
    requests: int
    p95_ms: float | None
    previous_p95_ms: float | None
    error_rate: float | None
    mean_ms: float | None
    breakdown_ms: dict[str, float | None] = Field(
        description="Mean db/cache/http/template/self ms per request."
    )
    daily_p95_ms: dict[str, float | None] = Field(
        description="p95 ms per day (YYYY-MM-DD), this week and the one before."
    )


class ReportFinding(BaseModel):
    id: str
    status: str = Field(description="new | regressed | open | resolved")
    kind: str
    severity: str
    service: str
    endpoint: str
    title: str
    occurrences: int
    impact_ms: float
    previous_occurrences: int
    previous_impact_ms: float
    code_location: CodeLocation | None
    fix_hint: str
    example_trace_id: str | None


class ReportFindings(BaseModel):
    new: list[ReportFinding]
    regressed: list[ReportFinding]
    open: list[ReportFinding]
    resolved: list[ReportFinding]


class ReportCounts(BaseModel):
    new: int
    regressed: int
    open: int
    resolved: int


class WeeklyReport(BaseModel):
    """One ISO week compared with the week before (``tracehound report --format json``)."""

    week: str = Field(description="ISO week, YYYY-Www.")
    start: str = Field(description="Monday 00:00 UTC, ISO 8601.")
    end: str = Field(description="The next Monday 00:00 UTC (exclusive).")
    previous_week: str
    headline: Headline
    routes: list[ReportRoute]
    findings: ReportFindings
    counts: ReportCounts
    top_findings: list[ReportFinding]
