"""The span writer: a bounded queue drained by one thread that commits in groups.

Receivers call :meth:`SpanWriter.submit` with a :class:`~.decode.DecodedBatch` and get a
``concurrent.futures.Future`` that completes only after the batch's spans are committed to DuckDB
(so an acknowledged export is durable: DuckDB syncs its write-ahead log on commit). The writer
takes every batch waiting at that moment, inserts them with one ``INSERT ... SELECT`` over the
concatenated Arrow tables, and commits once (group commit): many concurrent requests cost one
commit. If that insert fails, each batch is retried on its own, so one bad request cannot fail
the others.

Backpressure: at most ``queue_max_spans`` spans may wait for commit. :meth:`submit` returns
``None`` when a batch would go over it (the receivers then answer 503 / ``UNAVAILABLE``); a single
batch larger than the limit is still accepted when the queue is empty, so it cannot starve.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from .decode import INSERT_SQL, DecodedBatch, combine


@dataclass
class IngestStats:
    """Counters served at ``GET /v1/status`` (all since start; spans are counts, times in ns)."""

    requests: int = 0
    spans_received: int = 0
    spans_rejected: int = 0
    spans_committed: int = 0
    requests_refused_busy: int = 0
    requests_bad: int = 0
    commits: int = 0
    commit_ns_total: int = 0
    started_at_ns: int = field(default_factory=time.time_ns)

    def as_dict(self) -> dict:
        """The counters as a JSON-able dict."""
        return dict(self.__dict__)


class SpanWriter:
    """One thread that owns a DuckDB cursor and commits queued span batches in groups.

    ``con`` is the process's DuckDB connection (the writer uses its own ``con.cursor()``).
    Call :meth:`start`, then :meth:`submit` from any thread, and :meth:`stop` to flush and join.
    """

    def __init__(self, con, queue_max_spans: int, stats: IngestStats | None = None):
        self._cursor = con.cursor()
        self.queue_max_spans = queue_max_spans
        self.stats = stats or IngestStats()
        self._cv = threading.Condition()
        self._queue: deque[tuple[DecodedBatch, Future]] = deque()
        self._pending_spans = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tracehound-writer", daemon=True)

    @property
    def pending_spans(self) -> int:
        """Spans accepted but not yet committed."""
        return self._pending_spans

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, batch: DecodedBatch) -> Future | None:
        """Queue ``batch`` (its storable spans, ``batch.count`` > 0) for commit.

        Returns a Future resolved with the number of rows once they are committed (or failed with
        the DuckDB error), or ``None`` when the queue is full or the writer is stopping: the caller
        must then tell its client to retry later.
        """
        n = batch.count
        future: Future = Future()
        with self._cv:
            if self._stopping:
                return None
            if self._pending_spans and self._pending_spans + n > self.queue_max_spans:
                return None
            self._pending_spans += n
            self._queue.append((batch, future))
            self._cv.notify()
        return future

    def stop(self, timeout: float | None = None) -> bool:
        """Refuse new work, commit everything queued, join the thread; True if it finished."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if not self._queue and self._stopping:
                    return
                batch = list(self._queue)
                self._queue.clear()
            n = sum(b.count for b, _ in batch)
            started = time.perf_counter_ns()
            try:
                self._insert([b for b, _ in batch])
                results = [None] * len(batch)
            except Exception as exc:
                if len(batch) == 1:
                    results = [exc]
                else:  # retry one by one: only the culprit fails
                    results = []
                    for b, _ in batch:
                        try:
                            self._insert([b])
                            results.append(None)
                        except Exception as exc2:
                            results.append(exc2)
            with self._cv:
                self._pending_spans -= n
            stats = self.stats
            stats.commits += 1
            stats.commit_ns_total += time.perf_counter_ns() - started
            for (b, future), error in zip(batch, results, strict=True):
                if error is None:
                    stats.spans_committed += b.count
                    future.set_result(b.count)
                else:
                    future.set_exception(error)

    def _insert(self, batches: list[DecodedBatch]) -> None:
        spans, resources, scopes = combine(batches)
        cursor = self._cursor
        cursor.register("_th_spans", spans)
        cursor.register("_th_resources", resources)
        cursor.register("_th_scopes", scopes)
        try:
            cursor.execute(INSERT_SQL)  # one statement in autocommit mode: one commit
        finally:
            for name in ("_th_spans", "_th_resources", "_th_scopes"):
                cursor.unregister(name)
