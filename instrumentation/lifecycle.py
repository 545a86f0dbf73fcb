"""Process-level robustness: quiet export failures, flush on SIGTERM, Flask reloader parent.

* :class:`QuietSpanExporter` wraps the OTLP exporter. When the tracehound server is down, the
  upstream exporter logs every retry and every failed batch; tracehound silences those records
  and logs ONE warning (with the first upstream reason) until an export succeeds again, then
  one info line with the number of spans dropped meanwhile. The app never waits on it: exports
  run in the BatchSpanProcessor thread, bounded by ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s).
* :func:`install_sigterm_flush`: when SIGTERM still has its default action (``flask run``,
  ``python app.py``), the handler flushes the tracer provider, then restores the default
  action and re-sends SIGTERM, so the process still ends "killed by SIGTERM". Servers that
  install their own handler (gunicorn) keep it: gunicorn workers exit through ``sys.exit``,
  which flushes via the SDK's ``atexit`` hook.
* :func:`install_reloader_guard`: the Werkzeug reloader's parent process only watches files and
  restarts the serving child. Once it enters ``run_with_reloader`` as the parent, its spans
  (e.g. queries run while importing the app) are dropped, so spans come only from the serving
  process. Spans the parent exported before that point (only if importing the app took longer
  than ``OTEL_BSP_SCHEDULE_DELAY``, 5 s) cannot be recalled. On SIGTERM the parent forwards
  the signal to the serving child and waits for it (Werkzeug would SIGKILL it, losing its
  queued spans).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_log = logging.getLogger("tracehound.instrumentation")
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"  # the BatchSpanProcessor's "Queue full"
REPROBE_INTERVAL_S = 5.0
"""While exports fail, batches are dropped at once; one batch is tried at most this often."""
_drop_all = False
_closing = threading.Event()


def drop_spans_of_this_process() -> None:
    """From now on, this process exports nothing (used for the reloader parent)."""
    global _drop_all
    _drop_all = True


def export_timeout_s(environ=None) -> float:
    """The OTLP span exporter's timeout in seconds (``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` or
    ``OTEL_EXPORTER_OTLP_TIMEOUT``, as the SDK reads them; default 10 s)."""
    env = os.environ if environ is None else environ
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        with contextlib.suppress(ValueError, TypeError):
            value = float(env.get(name, ""))
            if value > 0:
                return value
    return 10.0


def _first_line(message: str, limit: int = 300) -> str:
    """First line of ``message``, shortened at a word boundary to at most ``limit`` chars."""
    line = message.splitlines()[0] if message else ""
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0] + " ..."


class _Silencer(logging.Filter):
    """Drops the upstream exporters' warnings and errors, keeping the first one as the reason."""

    def __init__(self):
        super().__init__()
        self.first_reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """False (record dropped) for WARNING and above; remembers the first such message."""
        if record.levelno >= logging.WARNING:
            if self.first_reason is None:
                self.first_reason = _first_line(record.getMessage())
            return False
        return True


class _QueueFullCounter(logging.Filter):
    """Silences the BatchSpanProcessor's "Queue full, dropping Span." records (one per dropped
    span, otherwise rate-limited to one per 20 s by the SDK) and counts them."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """False (record dropped, one span counted) for "Queue full" about spans."""
        if record.msg == "Queue full, dropping %s." and record.args == ("Span",):
            self.count += 1
            return False
        return True


_queue_full = _QueueFullCounter()


def _install_queue_full_counter() -> None:
    logger = logging.getLogger(_BATCH_LOGGER)
    if _queue_full not in logger.filters:
        logger.filters.insert(0, _queue_full)  # before the SDK's DuplicateFilter: see every record


class QuietSpanExporter(SpanExporter):
    """Delegates to ``inner``; a failing endpoint costs the app neither time nor log lines.

    * The first failed export logs ONE warning (endpoint and the first upstream reason, cut at a
      word boundary at 300 chars); upstream exporter warnings/errors and the SDK's "Queue full"
      records are silenced, and dropped spans are counted.
    * While failing, batches are dropped at once, and one batch is tried (a probe) at most every
      :data:`REPROBE_INTERVAL_S` seconds, so the export thread keeps up and a shutdown is not
      held up by one exporter timeout per batch. During process exit (:func:`begin_closing`) no
      new probe is made.
    * When an export succeeds again: one info line with the number dropped. At shutdown with
      spans dropped: one info line "N spans dropped in total".
    """

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self._failing = False
        self._dropped = 0
        self._dropped_total = 0
        self._queue_full_seen = _queue_full.count
        self._next_probe = 0.0
        self._silencer = _Silencer()
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self._silencer)
        _install_queue_full_counter()

    def _endpoint(self) -> str:
        return str(getattr(self.inner, "_endpoint", None) or type(self.inner).__name__)

    def _count_queue_full(self) -> None:
        seen, self._queue_full_seen = self._queue_full_seen, _queue_full.count
        self._dropped += self._queue_full_seen - seen
        self._dropped_total += self._queue_full_seen - seen

    def _drop(self, count: int) -> SpanExportResult:
        self._dropped += count
        self._dropped_total += count
        return SpanExportResult.FAILURE

    def export(self, spans: Sequence) -> SpanExportResult:
        """Export ``spans`` through ``inner``, or drop them at once while the endpoint fails
        (see the class docstring). Never raises."""
        if _drop_all:
            return SpanExportResult.SUCCESS
        self._count_queue_full()
        if self._failing and (_closing.is_set() or time.monotonic() < self._next_probe):
            return self._drop(len(spans))
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the BSP thread
            self._silencer.first_reason = self._silencer.first_reason or repr(exc)
            result = SpanExportResult.FAILURE
        self._count_queue_full()
        if result is SpanExportResult.SUCCESS:
            if self._failing:
                _log.info(
                    "tracehound: %s accepts spans again; %d spans were dropped meanwhile",
                    self._endpoint(),
                    self._dropped,
                )
                self._failing = False
                self._dropped = 0
                self._silencer.first_reason = None
            return result
        self._next_probe = time.monotonic() + REPROBE_INTERVAL_S
        if not self._failing:
            self._failing = True
            _log.warning(
                "tracehound: cannot export spans to %s (%s); spans are dropped until it answers, "
                "the app is not affected. Start the server with 'tracehound serve' or set "
                "OTEL_EXPORTER_OTLP_ENDPOINT. Further export errors are not logged.",
                self._endpoint(),
                self._silencer.first_reason or "export failed",
            )
        return self._drop(len(spans))

    def shutdown(self) -> None:
        """Shut ``inner`` down; log the total of dropped spans once, if any."""
        self._count_queue_full()
        if self._dropped_total and not _drop_all:
            _log.info(
                "tracehound: %d spans dropped in total (%s did not accept them)",
                self._dropped_total,
                self._endpoint(),
            )
            self._dropped_total = 0
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Delegates to ``inner.force_flush``."""
        return self.inner.force_flush(timeout_millis)


def ensure_log_handler() -> None:
    """Make tracehound's own warnings visible on stderr even when the app configures no logging."""
    if not _log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False


def begin_closing() -> None:
    """The process is exiting: failing exporters make no new probe, they drop what is left."""
    _closing.set()


def shutdown_with_deadline(provider, deadline_s: float | None = None) -> bool:
    """Shut ``provider`` down (flushing queued spans), waiting at most ``deadline_s`` seconds
    (default: the exporter timeout + 1 s, see :func:`export_timeout_s`); True when it finished.

    The SDK's own ``BatchSpanProcessor.shutdown`` waits up to 30 s; here the flush runs in a
    daemon thread and is abandoned at the deadline (its remaining spans are lost)."""
    begin_closing()
    deadline_s = export_timeout_s() + 1.0 if deadline_s is None else deadline_s
    worker = threading.Thread(target=provider.shutdown, name="tracehound-flush", daemon=True)
    worker.start()
    worker.join(deadline_s)
    return not worker.is_alive()


def install_exit_flush(provider) -> None:
    """At interpreter exit, flush ``provider`` with :func:`shutdown_with_deadline`. Registered
    after the SDK's own ``atexit`` hook, so it runs first; the SDK's second shutdown is a no-op.

    Further SIGTERMs are ignored during that (deadline-bounded) flush: Werkzeug's reloader child
    exits through ``sys.exit`` on SIGTERM, and a second SIGTERM (``killpg`` plus the parent
    forwarding it) would otherwise raise ``SystemExit`` inside the flush and lose the spans."""

    def _flush_at_exit():
        with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        shutdown_with_deadline(provider)

    atexit.register(_flush_at_exit)


def install_sigterm_flush(provider) -> bool:
    """Flush ``provider`` on SIGTERM when SIGTERM has its default action; True when installed.

    The handler flushes with :func:`shutdown_with_deadline` (about one exporter timeout at
    most), restores the default action and re-sends SIGTERM, so the process still ends "killed
    by SIGTERM"."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    def _flush_and_die(signum, frame):
        # A second SIGTERM (killpg plus a forwarding reloader parent) would re-enter this handler
        # and end the process mid-flush; the flush has its own deadline, so ignore it meanwhile.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            shutdown_with_deadline(provider)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, _flush_and_die)
    return True


class _ForwardingSubprocess:
    """Stands in for the ``subprocess`` module inside ``werkzeug._reloader`` (parent only).

    Werkzeug's parent runs the serving child with ``subprocess.call``; on SIGTERM it raises
    ``SystemExit`` inside ``call``, which SIGKILLs the child before it can flush its spans.
    Here SIGTERM is forwarded to the child instead, and the parent waits for it to exit.
    """

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def call(args, **kwargs):
        """``subprocess.call`` whose SIGTERM goes to the child (then waits for it); returns
        the child's exit code. Any other exception still kills the child."""
        with subprocess.Popen(args, **kwargs) as child:

            def forward(signum, frame):
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

            previous = signal.signal(signal.SIGTERM, forward)
            try:
                return child.wait()
            except BaseException:
                child.kill()
                raise
            finally:
                signal.signal(signal.SIGTERM, previous)


def install_reloader_guard() -> bool:
    """Drop spans of the Werkzeug reloader's parent process (see the module docstring)."""
    try:
        import werkzeug._reloader as reloader
    except ImportError:
        return False
    original = reloader.run_with_reloader
    if getattr(original, "_tracehound", False):
        return True

    def run_with_reloader(*args, **kwargs):
        if os.environ.get("WERKZEUG_RUN_MAIN") != "true":
            drop_spans_of_this_process()
            reloader.subprocess = _ForwardingSubprocess()
        return original(*args, **kwargs)

    run_with_reloader._tracehound = True
    reloader.run_with_reloader = run_with_reloader
    return True
