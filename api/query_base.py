"""Shared pieces of the read-side queries: errors, window resolution, constants.

Every value that comes from a user or a span is bound as a query parameter, never formatted into SQL.
"""

from __future__ import annotations

import datetime as dt
import re

SEVERITIES = ("low", "medium", "high")
FINDING_SORTS = ("impact_ms", "occurrences", "last_seen")
TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
#: Number of time buckets of the endpoint trend charts.
TREND_BUCKETS = 24
#: Default window of the endpoint statistics when no ``since`` is given: the last 24 hours that
#: hold data (ending at the newest analysed trace), so a database from yesterday still shows.
DEFAULT_WINDOW = dt.timedelta(hours=24)
#: Finding kinds that describe a symptom (a slow request or span) rather than a cause: their time is
#: the same time as the N+1/HTTP/cache findings on the route, so totals of "time wasted" leave them out.
SYMPTOM_KINDS = ("slow_endpoint", "slow_span")


class NotFound(LookupError):
    """Something asked for by id does not exist; the message names it (HTTP 404)."""


class BadRequest(ValueError):
    """A parameter is malformed; the message says what is expected (HTTP 400)."""


def _utc_naive(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are stored as naive UTC; convert aware datetimes, keep naive ones as UTC."""
    if value is not None and value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


#: TIMESTAMP_NS covers 1677-09-21 .. 2262-04-11; window bounds are clamped into it.
_TS_MIN, _TS_MAX = dt.datetime(1678, 1, 1), dt.datetime(2262, 1, 1)


def _clamp(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else min(max(value, _TS_MIN), _TS_MAX)


def _check_window(since, until):
    since, until = _clamp(_utc_naive(since)), _clamp(_utc_naive(until))
    if since and until and since > until:
        raise BadRequest(f"since ({since.isoformat()}Z) is after until ({until.isoformat()}Z)")
    return since, until


def _window(cur, since, until) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Resolve the statistics window. A missing ``until`` is just after the newest trace; a missing
    ``since`` is the oldest trace, but at most DEFAULT_WINDOW before ``until`` (and at least a minute),
    so trend charts spread their buckets over the data there is. ``(None, None)`` with no data."""
    since, until = _check_window(since, until)
    if since is None or until is None:
        first, last = cur.execute("SELECT min(start), max(start) FROM trace_summaries").fetchone()
        if first is None:
            return since, until
        if until is None:
            until = last + dt.timedelta(microseconds=1)
        if since is None:
            since = max(until - DEFAULT_WINDOW, min(first, until - dt.timedelta(minutes=1)))
    return since, until
