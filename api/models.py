"""Pydantic response models of the REST API (they also make the OpenAPI document).

Times are ISO 8601 UTC; names ending in ``_ms`` are milliseconds, ``_ns`` nanoseconds; ratios and
rates are fractions 0..1.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field


def _as_utc(value: dt.datetime) -> dt.datetime:
    """Stored timestamps are naive UTC: mark them UTC so they serialise as RFC 3339 with ``Z``."""
    return (
        value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    )


UtcDateTime = Annotated[dt.datetime, AfterValidator(_as_utc)]


class ErrorDetail(BaseModel):
    status: int = Field(description="HTTP status code, repeated in the body.")
    message: str = Field(description="What went wrong and, for 4xx, what to change.")


class ErrorBody(BaseModel):
    """The one error body of every 4xx/5xx answer."""

    error: ErrorDetail


class CodeLocation(BaseModel):
    filepath: str | None = None
    lineno: int | None = None
    function: str | None = None


class Finding(BaseModel):
    """One problem, keyed by a stable fingerprint; ``impact_ms`` is the time wasted in total."""

    id: str
    fingerprint: str
    kind: str = Field(description="n_plus_one_query, slow_query, cache_miss_ratio, ... (snake_case)")
    severity: str = Field(description="low | medium | high")
    service: str
    endpoint: str = Field(description="http.route of the root server span ('' if none)")
    title: str
    occurrences: int
    first_seen: UtcDateTime
    last_seen: UtcDateTime
    impact_ms: float
    evidence: Any = Field(description="Kind-specific: statement, counts per request, durations, ratios.")
    example_trace_ids: list[str]
    code_location: CodeLocation
    fix_hint: str


class FindingPage(BaseModel):
    items: list[Finding]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class Occurrence(BaseModel):
    trace_id: str
    timestamp: UtcDateTime
    impact_ms: float
    span_count: int
    duration_ms: float
    span_ids: list[str]


class Event(BaseModel):
    name: str | None
    timestamp: UtcDateTime | None


class Span(BaseModel):
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    start: UtcDateTime
    duration_ns: int
    duration_ms: float
    start_offset_ms: float = Field(description="Start relative to the trace's first span.")
    depth: int = Field(description="Nesting depth in the waterfall (0 = root).")
    offset_pct: float
    width_pct: float
    status_code: str
    status_message: str
    scope_name: str
    attributes: dict[str, str]
    resource_attributes: dict[str, str]
    events: list[Event]
    code_location: CodeLocation | None
    statement: str | None
    label: str = Field(
        description="What the waterfall row says: statement, cache operation + key, HTTP method + URL, or the name."
    )
    highlight: bool = Field(description="True for the offending spans of a finding's example trace.")


class Trace(BaseModel):
    trace_id: str
    start: UtcDateTime
    duration_ms: float
    span_count: int
    services: list[str]
    root_name: str
    spans: list[Span]


class ExampleTrace(BaseModel):
    trace_id: str
    highlight_span_ids: list[str]
    trace: Trace


class FindingDetail(Finding):
    recent_occurrences: list[Occurrence]
    example: ExampleTrace | None


class Endpoint(BaseModel):
    service: str
    endpoint: str
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rps: float = Field(
        description="Requests / seconds between the window's first and last request."
    )
    error_rate: float
    queries_per_request: float
    cache_hit_ratio: float | None = Field(description="null when the route made no cache lookups.")
    findings_impact_ms: float = Field(
        description="Time wasted by the route's findings, leaving out symptom kinds (slow_endpoint, slow_span)."
    )
    trend_p95_ms: list[float | None] | None = Field(
        None, description="With ?trend=true: p95 ms per time bucket of the window (null = no request)."
    )


class EndpointList(BaseModel):
    since: UtcDateTime | None
    until: UtcDateTime | None
    items: list[Endpoint]


class SeriesPoint(BaseModel):
    start: UtcDateTime
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    db_ms: float
    cache_ms: float
    http_ms: float
    template_ms: float
    self_ms: float


class EndpointSeries(BaseModel):
    service: str | None
    endpoint: str
    since: UtcDateTime
    until: UtcDateTime
    bucket_seconds: float
    points: list[SeriesPoint]


class Service(BaseModel):
    service: str
    requests: int
    endpoints: int
    error_rate: float | None
    p95_ms: float | None
    last_seen: UtcDateTime | None
    findings: int
    impact_ms: float = Field(
        description="Time wasted by the service's findings, leaving out symptom kinds (slow_endpoint, "
        "slow_span): their time is the same time as the causes found on the route."
    )
