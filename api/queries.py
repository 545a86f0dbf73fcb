"""Read-side queries of the API: every HTML page and its JSON twin call the same function here.

This module is the public surface; the code lives in :mod:`.queries_findings`,
:mod:`.queries_endpoints`, :mod:`.queries_traces` and :mod:`.query_base`.

All functions take a DuckDB cursor (one per request) and return plain dicts/lists, ready for the
pydantic models in :mod:`tracehound.api.models` and the Jinja2 templates. Every value that comes
from a user or a span is bound as a query parameter, never formatted into SQL.

Speed: everything except :func:`get_trace` reads the analyzer's small tables (``findings``,
``finding_occurrences``, ``trace_summaries``), never a scan of ``otel_traces``. :func:`get_trace`
reads one trace and narrows the scan with the trace's start time from ``trace_summaries``, so
DuckDB's min/max zone maps skip the row groups of other times.

Errors: :class:`NotFound` (HTTP 404) and :class:`BadRequest` (HTTP 400) carry a message that says
what was not found or what to change.
"""

from __future__ import annotations

from .queries_endpoints import endpoint_series, list_endpoints, list_services
from .queries_findings import decode_cursor, encode_cursor, get_finding, list_findings
from .queries_traces import get_trace, status
from .query_base import (
    FINDING_SORTS,
    SEVERITIES,
    SYMPTOM_KINDS,
    TRACE_ID_RE,
    TREND_BUCKETS,
    BadRequest,
    NotFound,
)

__all__ = [
    "FINDING_SORTS",
    "SEVERITIES",
    "SYMPTOM_KINDS",
    "TRACE_ID_RE",
    "TREND_BUCKETS",
    "BadRequest",
    "NotFound",
    "decode_cursor",
    "encode_cursor",
    "endpoint_series",
    "get_finding",
    "get_trace",
    "list_endpoints",
    "list_findings",
    "list_services",
    "overview",
    "status",
]


def overview(cur) -> dict:
    """Everything the ``/`` page shows: services, top 10 findings by impact, endpoints with trends."""
    return {
        "services": list_services(cur),
        "findings": list_findings(cur, limit=10)["items"],
        "endpoints": list_endpoints(cur, with_trend=True),
    }
