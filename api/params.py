"""Query parameters shared by the JSON routes and their HTML twins.

An empty string counts as "not given" everywhere (an HTML filter form submits every field, filled or
not: ``?service=&kind=n_plus_one_query``). ``kind``, ``severity`` and ``sort`` are enums: an unknown
value is a 422 in the one error body (never a silent empty list).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated

from fastapi import Query
from pydantic import BeforeValidator, WithJsonSchema
from tracehound.analyzer.detectors import DETECTORS

#: Finding kinds: one per analyzer detector (``tracehound.analyzer.detectors.DETECTORS``).
FindingKind = enum.Enum("FindingKind", {name: name for name in DETECTORS}, type=str)
FindingKind.__doc__ = "Finding kind (the analyzer detector that produced it)."


class Severity(str, enum.Enum):
    """Severity of a finding."""

    low = "low"
    medium = "medium"
    high = "high"


class FindingSort(str, enum.Enum):
    """Sort key of the findings list (always descending)."""

    impact_ms = "impact_ms"
    occurrences = "occurrences"
    last_seen = "last_seen"


ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$", re.I)


def blank_is_none(value):
    """``''`` (an empty form field) -> ``None``."""
    return None if isinstance(value, str) and not value.strip() else value


def iso_8601(value):
    """Accept only ISO 8601 date/times (pydantic alone would also take '0.5' as a Unix time);
    ``''`` is ``None``."""
    value = blank_is_none(value)
    if isinstance(value, (int, float)):  # JSON bodies: no Unix times either
        raise ValueError("must be an ISO 8601 date-time string such as 2026-11-16T10:00:00Z")
    if isinstance(value, str) and not ISO_8601.match(value.strip()):
        raise ValueError("must be an ISO 8601 date-time such as 2026-11-16T10:00:00Z")
    return value


_EMPTY = {"type": "string", "maxLength": 0}


def _or_empty(schema: dict) -> WithJsonSchema:
    """OpenAPI schema: ``schema``, an empty string (an empty form field) or null."""
    return WithJsonSchema({"anyOf": [schema, _EMPTY, {"type": "null"}]})


IsoDateTime = Annotated[dt.datetime, BeforeValidator(iso_8601)]
OptionalIso = Annotated[
    dt.datetime | None, BeforeValidator(iso_8601), _or_empty({"type": "string", "format": "date-time"})
]
Since = Annotated[OptionalIso, Query(description="Window start, ISO 8601 (UTC if no offset).")]
Until = Annotated[OptionalIso, Query(description="Window end (exclusive), ISO 8601.")]
Text = Annotated[str | None, BeforeValidator(blank_is_none), Query()]
Kind = Annotated[
    FindingKind | None,
    BeforeValidator(blank_is_none),
    _or_empty({"type": "string", "enum": [k.value for k in FindingKind]}),
    Query(description="Finding kind."),
]
SeverityParam = Annotated[
    Severity | None,
    BeforeValidator(blank_is_none),
    _or_empty({"type": "string", "enum": [s.value for s in Severity]}),
    Query(),
]
Sort = Annotated[
    FindingSort,
    BeforeValidator(lambda v: blank_is_none(v) or "impact_ms"),
    _or_empty({"type": "string", "enum": [s.value for s in FindingSort], "default": "impact_ms"}),
    Query(description="Sort key, descending (empty = impact_ms)."),
]


def finding_filters(
    service: Text = None,
    kind: Kind = None,
    endpoint: Annotated[
        str | None, BeforeValidator(blank_is_none), Query(description="http.route, exactly")
    ] = None,
    severity: SeverityParam = None,
    since: Since = None,
    until: Until = None,
    sort: Sort = FindingSort.impact_ms,
) -> dict:
    """The filters of ``/api/findings`` and ``/findings`` as keyword arguments of
    :func:`tracehound.api.queries.list_findings` (enums as their string values)."""
    return {
        "service": service,
        "kind": kind.value if kind else None,
        "endpoint": endpoint,
        "severity": severity.value if severity else None,
        "since": since,
        "until": until,
        "sort": sort.value,
    }
