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

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_log = logging.getLogger("tracehound.instrumentation")
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
_drop_all = False


def drop_spans_of_this_process() -> None:
    """From now on, this process exports nothing (used for the reloader parent)."""
    global _drop_all
    _drop_all = True


class _Silencer(logging.Filter):
    def __init__(self):
        super().__init__()
        self.first_reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            if self.first_reason is None:
                self.first_reason = record.getMessage().splitlines()[0][:300]
            return False
        return True


class QuietSpanExporter(SpanExporter):
    """Delegates to ``inner``; reports a failing endpoint once instead of once per batch."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self._failing = False
        self._dropped = 0
        self._silencer = _Silencer()
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).addFilter(self._silencer)

    def _endpoint(self) -> str:
        return str(getattr(self.inner, "_endpoint", None) or type(self.inner).__name__)

    def export(self, spans: Sequence) -> SpanExportResult:
        if _drop_all:
            return SpanExportResult.SUCCESS
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the BSP thread
            self._silencer.first_reason = self._silencer.first_reason or repr(exc)
            result = SpanExportResult.FAILURE
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
        self._dropped += len(spans)
        if not self._failing:
            self._failing = True
            _log.warning(
                "tracehound: cannot export spans to %s (%s); spans are dropped until it answers, "
                "the app is not affected. Start the server with 'tracehound serve' or set "
                "OTEL_EXPORTER_OTLP_ENDPOINT. Further export errors are not logged.",
                self._endpoint(),
                self._silencer.first_reason or "export failed",
            )
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def ensure_log_handler() -> None:
    """Make tracehound's own warnings visible on stderr even when the app configures no logging."""
    if not _log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False


def install_sigterm_flush(provider) -> bool:
    """Flush ``provider`` on SIGTERM when SIGTERM has its default action; True when installed."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False

    def _flush_and_die(signum, frame):
        try:
            provider.shutdown()
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
