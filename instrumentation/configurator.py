"""tracehound's SDK configurator (entry point ``opentelemetry_configurator: tracehound``).

Builds the SDK exactly like the upstream ``_OTelSDKConfigurator`` from the ``OTEL_*``
environment, plus:

* :class:`~tracehound.instrumentation.codeloc.CodeLocationProcessor` (code location on CLIENT
  spans) before the export processor;
* every span exporter wrapped in :class:`~tracehound.instrumentation.lifecycle.QuietSpanExporter`
  (one warning when the server is down, reloader-parent spans dropped);
* flush on SIGTERM and the Werkzeug reloader guard.
"""

from __future__ import annotations

from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace.export import BatchSpanProcessor

configured = False


def _export_processor(exporter, *args, **kwargs):
    from .lifecycle import QuietSpanExporter

    return BatchSpanProcessor(QuietSpanExporter(exporter), *args, **kwargs)


class TracehoundConfigurator(_OTelSDKConfigurator):
    """Upstream SDK configuration plus tracehound's processors (see the module docstring)."""

    def _configure(self, **kwargs):
        global configured
        from opentelemetry import trace

        from . import lifecycle
        from .codeloc import CodeLocationProcessor

        lifecycle.ensure_log_handler()
        kwargs.setdefault("span_processors", [CodeLocationProcessor()])
        kwargs.setdefault("export_span_processor", _export_processor)
        super()._configure(**kwargs)
        configured = True
        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            lifecycle.install_sigterm_flush(provider)
            lifecycle.install_exit_flush(provider)
        lifecycle.install_reloader_guard()
