"""In-process cache of read-side query results, keyed on the version of the analyzer's data.

The statistics pages (``/``, ``/endpoints``, ``/reports/weekly`` and their JSON twins) aggregate up to
a million ``trace_summaries`` rows per request. Their result depends only on the arguments and on the
analyzer's tables, so :class:`QueryCache` remembers it per ``(function, arguments, data version)``.

The data version (:meth:`QueryCache.data_version`, ~1-3 ms: counts and max rowids answered from
metadata, plus a hash of the small ``findings`` table) changes whenever the analyzer writes:

* ``trace_summaries`` and ``finding_occurrences`` are only appended to or deleted from (a
  re-analysis deletes and re-inserts): an insert appends rowids above every rowid used so far and
  a delete lowers the count, so ``(count(*), max(rowid))`` changes with every write.
* ``findings`` rows are replaced or updated in place (``updated_at``): the hash of every column of
  every row changes with any of them.

The one change this cannot see is a delete and an insert of equally many rows followed by a
checkpoint that compacts rowids, with no finding touched, between two requests; entries therefore
also expire after ``ttl_seconds`` (default 300 s), which bounds how stale such an answer can be.
A live server that ingests keeps changing the version, so there the cache simply misses and each
request computes afresh; it pays off on data that has settled (past weeks, an idle server).

Cached values are shared between requests: callers must treat them as read-only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import duckdb

_VERSION_SQL = """
SELECT (SELECT count(*) FROM trace_summaries), (SELECT max(rowid) FROM trace_summaries),
       (SELECT count(*) FROM finding_occurrences), (SELECT max(rowid) FROM finding_occurrences),
       (SELECT count(*) FROM findings), (SELECT bit_xor(hash(f)) FROM findings f)
"""


class QueryCache:
    """LRU of up to ``max_entries`` results, each valid while the data version is unchanged and for
    at most ``ttl_seconds``. Thread-safe: one instance serves all requests of an app."""

    def __init__(self, max_entries: int = 64, ttl_seconds: float = 300.0):
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def data_version(cur) -> tuple:
        """A tuple that changes whenever ``trace_summaries``, ``finding_occurrences`` or ``findings``
        change (see the module docstring for the one exception). Raises ``duckdb.Error`` when a
        table is missing."""
        return cur.execute(_VERSION_SQL).fetchone()

    def get(self, cur, fn: Callable, *args, **kwargs):
        """``fn(cur, *args, **kwargs)``, or the remembered result of the same call on the same data.

        Arguments must be hashable. When the data version cannot be read the call is not cached."""
        try:
            version = self.data_version(cur)
        except duckdb.Error:
            return fn(cur, *args, **kwargs)
        key = (fn.__module__, fn.__qualname__, args, tuple(sorted(kwargs.items())), version)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl_seconds:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            self.misses += 1
        value = fn(cur, *args, **kwargs)  # outside the lock: other requests go on meanwhile
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value
