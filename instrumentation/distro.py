"""tracehound's OpenTelemetry distro (entry point ``opentelemetry_distro: tracehound``).

``opentelemetry-instrument`` loads it before anything else. It sets tracehound's defaults with
``os.environ.setdefault``, so every ``OTEL_*`` variable the user sets wins:

=================================  ================
``OTEL_TRACES_EXPORTER``           ``otlp``
``OTEL_EXPORTER_OTLP_PROTOCOL``    ``http/protobuf`` (endpoint default ``http://localhost:4318``)
``OTEL_METRICS_EXPORTER``          ``none``
``OTEL_LOGS_EXPORTER``             ``none``
``OTEL_SEMCONV_STABILITY_OPT_IN``  ``http/dup,database/dup`` (old AND new semconv names, e.g.
                                   ``http.method`` and ``http.request.method``, ``db.statement``
                                   and ``db.query.text``: the analyzer reads either)
=================================  ================

It also passes tracehound's ``response_hook`` to the redis instrumentation (``cache.hit`` on
GET/MGET). Everything else tracehound adds is installed by the start-up hook
(:mod:`tracehound.instrumentation.hooks`), which runs whichever distro was picked.

With ``opentelemetry-distro`` installed too, ``opentelemetry-instrument`` uses the first distro
and configurator entry points it finds (installation order, not deterministic). If that is
opentelemetry-distro's, its defaults apply (OTLP over gRPC to :4317, metrics and logs on) and
tracehound prints one warning saying so. Fix: ``OTEL_PYTHON_DISTRO=tracehound`` and
``OTEL_PYTHON_CONFIGURATOR=tracehound``, or uninstall opentelemetry-distro.
"""

from __future__ import annotations

import logging
import os

from opentelemetry.instrumentation.distro import BaseDistro

DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup,database/dup",
}

configured = False


class _ForcedRefusalFilter(logging.Filter):
    """Drops upstream's "X only instruments ..." error for libraries tracehound instruments anyway
    (the start-up hook instruments them; ``tracehound doctor`` reports it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (record dropped) for upstream's refusal line of a library in ``FORCED``."""
        from .compat import FORCED

        message = record.getMessage()
        return not any(message.startswith(f"{name} only instruments") for name in FORCED)


def _quiet_forced_refusals() -> None:
    logging.getLogger("opentelemetry.instrumentation.auto_instrumentation._load").addFilter(
        _ForcedRefusalFilter()
    )


class TracehoundDistro(BaseDistro):
    """Sets tracehound's ``OTEL_*`` defaults and per-instrumentation options."""

    def _configure(self, **kwargs):
        global configured
        for key, value in DEFAULTS.items():
            os.environ.setdefault(key, value)
        _quiet_forced_refusals()
        configured = True

    def load_instrumentor(self, entry_point, **kwargs):
        """Instantiate and ``instrument()`` one upstream instrumentor, with tracehound hooks."""
        if entry_point.name == "redis":
            from .caching import redis_response_hook

            kwargs.setdefault("response_hook", redis_response_hook)
        instrumentor = entry_point.load()
        instrumentor().instrument(**kwargs)
