"""The span writer: a bounded queue drained by writer threads that commit in groups.

Receivers call :meth:`SpanWriter.submit` with a :class:`~.decode.DecodedBatch` and get a
``concurrent.futures.Future`` that completes only after the batch's spans are committed to DuckDB
(so an acknowledged export is durable: DuckDB syncs its write-ahead log on commit). A writer
thread takes every batch waiting at that moment, inserts them with one ``INSERT ... SELECT`` over the
concatenated Arrow tables, and commits once (group commit): many concurrent requests cost one
commit. If that insert fails, each batch is retried on its own, so one bad request cannot fail
the others; a batch whose own retry fails too completes its Future with

* :class:`SpansRejected` when DuckDB refuses the spans themselves (a conversion, constraint or
  invalid-input error, or Arrow refusing the columns): retrying cannot help, so the receivers
  report the request's spans in ``partial_success.rejected_spans`` with the message;
* :class:`StorageUnavailable` for every other failure (I/O error, out of memory, transaction
  conflict, ...), which may be transient: the receivers answer 503 + ``Retry-After`` / gRPC
  ``UNAVAILABLE`` with ``RetryInfo``, which OTLP exporters retry (they do not retry 500).

Checkpoints: the writer runs ``CHECKPOINT`` itself each time ``otel_traces`` crosses a multiple of
:data:`ROW_GROUP_ROWS` rows (after answering the requests of that commit, and once the other
writer's insert in flight has committed; a group commit ends with the batch that crosses, so the
checkpoint comes at most a request or two after the boundary). A checkpoint compresses
the table's last, partly filled row group, and the next one rewrites it and frees the old blocks;
checkpointing right after a row group fills leaves almost nothing to rewrite. Measured on 614,400
benchmark spans (tmp script in the commit message): DuckDB's own WAL-size trigger left 66 free
blocks (83.2 bytes/span of file, 55.0 in used blocks); aligned checkpoints left none (54.6
bytes/span of file) and cost less CPU (13.2 vs 16.4 µs/span of insert). DuckDB's size trigger
(``checkpoint_threshold``, see :mod:`~.store`) stays as a bound on the WAL.

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

import duckdb
import pyarrow as pa

from .batch import INSERT_SQL, DecodedBatch, combine

#: DuckDB / Arrow errors caused by the spans themselves: retrying the same batch cannot succeed.
DATA_ERRORS = (
    duckdb.ConstraintException,
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
    duckdb.InvalidTypeException,
    pa.ArrowException,
)


class SpansRejected(Exception):
    """DuckDB refused this request's own spans (even inserted alone): report them as rejected."""


class StorageUnavailable(Exception):
    """The insert failed for a reason that may pass (I/O, memory, conflict): ask to retry later."""


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, DATA_ERRORS):
        return SpansRejected(f"the database refused these spans: {str(exc).splitlines()[0]}")
    return StorageUnavailable(f"could not store spans now ({type(exc).__name__}): retry later")


#: DuckDB's row group size (rows): the writer checkpoints when ``otel_traces`` crosses a multiple.
ROW_GROUP_ROWS = 122_880
#: Writer threads (one per core of the 2-core machine this was tuned on; more gave nothing there).
WRITER_THREADS = 2
#: While one insert is in flight, another writer starts only with at least this many spans queued.
GROUP_MIN_SPANS = 2048


@dataclass
class IngestStats:
    """Counters served at ``GET /v1/status`` (all since start; spans are counts, times in ns)."""

    requests: int = 0
    spans_received: int = 0
    spans_rejected: int = 0
    spans_committed: int = 0
    requests_refused_busy: int = 0
    requests_bad: int = 0
    storage_errors: int = 0
    commits: int = 0
    commit_ns_total: int = 0
    checkpoints: int = 0
    checkpoint_ns_total: int = 0
    writer_threads: int = 0
    duckdb_threads: int = 0  # DuckDB's ``threads`` setting when the writer started
    started_at_ns: int = field(default_factory=time.time_ns)

    def as_dict(self) -> dict:
        """The counters as a JSON-able dict."""
        return dict(self.__dict__)


class SpanWriter:
    """Writer threads that own DuckDB cursors and commit queued span batches in groups.

    ``con`` is the process's DuckDB connection (each writer thread uses its own ``con.cursor()``).
    ``threads`` writers (default :data:`WRITER_THREADS`) take groups from the one queue and insert
    them concurrently: DuckDB appends from separate transactions in parallel and releases the GIL
    while it works, so two writers use both cores (measured on the benchmark spans, inserts alone:
    85k spans/s with one writer, 128k with two, same CPU per span). The writer whose group fills a
    row group holds the other back from taking rows past the boundary until that other writer's
    insert in flight has committed; then it checkpoints while the other goes on inserting.
    Call :meth:`start`, then :meth:`submit` from any thread, and :meth:`stop` to flush and join.
    """

    def __init__(
        self, con, queue_max_spans: int, stats: IngestStats | None = None, threads: int | None = None
    ):
        n_threads = max(1, threads or WRITER_THREADS)
        self._cursors = [con.cursor() for _ in range(n_threads)]
        # rows committed + taken by a writer (checkpoints follow row group boundaries of this count)
        self._planned_rows = self._cursors[0].execute("SELECT count(*) FROM otel_traces").fetchall()[0][0]
        self.queue_max_spans = queue_max_spans
        self.stats = stats or IngestStats()
        self._cv = threading.Condition()
        self._queue: deque[tuple[DecodedBatch, Future]] = deque()
        self._pending_spans = 0  # accepted, not committed yet
        self._queued_spans = 0  # accepted, not taken by a writer yet
        self._stopping = False
        self._active = 0  # inserts in flight
        self._checkpoint_pending = False
        self._threads = [
            threading.Thread(target=self._run, args=(cur,), name=f"tracehound-writer-{i}", daemon=True)
            for i, cur in enumerate(self._cursors)
        ]
        self.stats.writer_threads = n_threads
        self.stats.duckdb_threads = int(
            self._cursors[0].execute("SELECT current_setting('threads')").fetchall()[0][0]
        )

    @property
    def pending_spans(self) -> int:
        """Spans accepted but not yet committed."""
        return self._pending_spans

    def start(self) -> None:
        """Start the writer threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, batch: DecodedBatch) -> Future | None:
        """Queue ``batch`` (its storable spans, ``batch.count`` > 0) for commit.

        Returns a Future resolved with the number of rows once they are committed (or failed with
        :class:`SpansRejected` or :class:`StorageUnavailable`), or ``None`` when the queue is full or the writer is stopping: the caller
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
            self._queued_spans += n
            self._queue.append((batch, future))
            self._cv.notify()
        return future

    def stop(self, timeout: float | None = None) -> bool:
        """Refuse new work, commit everything queued, join the threads; True if they finished."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _run(self, cursor) -> None:
        while True:
            with self._cv:
                while not self._ready():
                    self._cv.wait()
                if not self._queue and self._stopping:
                    return
                batch, crosses = self._take_group()
                self._active += 1
            n = sum(b.count for b, _ in batch)
            started = time.perf_counter_ns()
            try:
                self._insert(cursor, [b for b, _ in batch])
                results = [None] * len(batch)
            except Exception:  # retry one by one: only the culprit fails (a lone batch: once more)
                results = []
                for b, _ in batch:
                    try:
                        self._insert(cursor, [b])
                        results.append(None)
                    except Exception as exc:
                        results.append(_classify(exc))
            elapsed = time.perf_counter_ns() - started
            failed = sum(b.count for (b, _), error in zip(batch, results, strict=True) if error is not None)
            with self._cv:
                self._active -= 1
                self._pending_spans -= n
                self._planned_rows -= failed
                stats = self.stats
                stats.commits += 1
                stats.commit_ns_total += elapsed
                stats.spans_committed += n - failed
                stats.storage_errors += sum(error is not None for error in results)
                self._cv.notify_all()
            for (b, future), error in zip(batch, results, strict=True):
                if error is None:
                    future.set_result(b.count)
                else:
                    future.set_exception(error)
            if crosses:
                # the row group is complete once the other writer's insert in flight (rows from
                # before the boundary) has committed; then the other writer may go on inserting
                # while DuckDB checkpoints (DuckDB 2 runs a checkpoint alongside appends)
                with self._cv:
                    while self._active:
                        self._cv.wait()
                    self._checkpoint_pending = False
                    self._cv.notify_all()
                self._checkpoint(cursor)

    def _ready(self) -> bool:
        """(Under the lock) whether this writer should take a group now.

        While another writer's insert is in flight, a writer waits for at least
        :data:`GROUP_MIN_SPANS` queued spans (or for that insert to end): every insert has a fixed
        cost (planning, committing, writing the WAL) of a few ms, so two small inserts cost more
        than one that holds both groups.
        """
        if self._stopping:
            return True
        if not self._queue or self._checkpoint_pending:
            return False
        return not self._active or self._queued_spans >= GROUP_MIN_SPANS

    def _take_group(self) -> tuple[list[tuple[DecodedBatch, Future]], bool]:
        """Everything queued, but ending with the batch that fills the current row group (if any);
        and whether this group fills it (its writer then checkpoints, and no writer takes another
        group until then: rows past the boundary committed before the checkpoint would leave a
        partly filled row group that the next checkpoint rewrites, freeing blocks).

        Stopping there keeps the checkpoint that follows close to the row group boundary, so the
        next checkpoint has at most one request's spans to rewrite (under load a group can hold
        up to ``queue_max_spans`` spans, which would otherwise all be rewritten).
        """
        queue = self._queue
        room = ROW_GROUP_ROWS - self._planned_rows % ROW_GROUP_ROWS
        group, spans = [], 0
        while queue and spans < room:
            item = queue.popleft()
            group.append(item)
            spans += item[0].count
        before = self._planned_rows
        self._planned_rows += spans
        self._queued_spans -= spans
        crosses = self._planned_rows // ROW_GROUP_ROWS != before // ROW_GROUP_ROWS
        if crosses:  # no writer takes rows past the boundary until the checkpoint has run
            self._checkpoint_pending = True
        return group, crosses

    def _checkpoint(self, cursor) -> None:
        started = time.perf_counter_ns()
        try:
            cursor.execute("CHECKPOINT").fetchall()
        except Exception:  # e.g. a concurrent checkpoint: DuckDB's own trigger will catch up
            return
        self.stats.checkpoints += 1
        self.stats.checkpoint_ns_total += time.perf_counter_ns() - started

    def _insert(self, cursor, batches: list[DecodedBatch]) -> None:
        # INSERT_SQL reads the Arrow table through DuckDB's replacement scan, which finds it as a
        # local variable of this frame by name: about 0.8 ms less per insert than
        # register()/unregister() (measured per 512-span request, 3 ms with three tables).
        _th_spans = combine(batches)  # noqa: F841 (read by name)
        cursor.execute(INSERT_SQL)  # one statement in autocommit mode: one commit
