"""Start-up hook (entry point ``opentelemetry_post_instrument: tracehound``).

``opentelemetry-instrument`` runs it after every upstream instrumentor, whichever distro and
configurator were picked. It

1. instruments the libraries an upstream instrumentation refused but tracehound knows to work
   (:data:`~tracehound.instrumentation.compat.FORCED`: SQLAlchemy 2.1 under an instrumentation
   that pins ``<2.1``), by calling the upstream instrumentor with ``skip_dep_check=True``;
2. prints ONE loud stderr warning per other refused library: its name, version and what is lost;
3. installs tracehound's SQLAlchemy listeners and Flask-Caching spans;
4. when another distro/configurator was picked (``opentelemetry-distro`` installed too), adds the
   code-location processor, the SIGTERM flush and the reloader guard to the SDK tracer provider
   and warns once about the defaults.
"""

from __future__ import annotations

import logging
import os
import sys

_log = logging.getLogger("tracehound.instrumentation")
_done = False


def _loud(message: str) -> None:
    print(f"\n*** tracehound WARNING: {message}\n", file=sys.stderr, flush=True)


def handle_refused() -> list[str]:
    """Force or warn about refused instrumentations; returns the names force-instrumented."""
    from . import compat

    forced = []
    for status in compat.instrumentation_statuses():
        if status.state == "forced":
            ep = compat.entry_point_named(status.name)
            try:
                ep.load()().instrument(skip_dep_check=True)
                forced.append(status.name)
                _log.debug("tracehound: instrumented %s despite: %s", status.name, status.describe_refusal())
            except Exception as exc:  # noqa: BLE001 - never break the app
                _loud(
                    f"{status.library} {status.library_version} is NOT traced: {status.describe_refusal()} "
                    f"and tracehound's fallback failed ({exc!r}). Lost: {compat.LOSSES.get(status.name, 'its spans')}."
                )
        elif status.state == "refused":
            _loud(
                f"{status.library} {status.library_version} is NOT traced: {status.describe_refusal()}. "
                f"Lost: {compat.LOSSES.get(status.name, 'its spans')}. "
                f"Fix: install a {status.distribution} release that supports {status.library} "
                f"{status.library_version}, or pin {status.required}."
            )
    return forced


def _warn_foreign_distro() -> None:
    from . import configurator, distro

    if distro.configured and configurator.configured:
        return
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "(SDK default)"
    )
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "(exporter default)"
    )
    which = []
    if not distro.configured:
        which.append(f"distro '{os.environ.get('OTEL_PYTHON_DISTRO') or 'another package'}'")
    if not configurator.configured:
        which.append(f"configurator '{os.environ.get('OTEL_PYTHON_CONFIGURATOR') or 'another package'}'")
    _loud(
        f"opentelemetry-instrument used the {' and '.join(which)} instead of tracehound's "
        f"(is opentelemetry-distro installed too?), so tracehound's defaults do not apply: traces go to "
        f"{endpoint} over {protocol}, metrics exporter {os.environ.get('OTEL_METRICS_EXPORTER', 'otlp')}, "
        f"logs exporter {os.environ.get('OTEL_LOGS_EXPORTER', 'otlp')}. "
        "Fix: set OTEL_PYTHON_DISTRO=tracehound OTEL_PYTHON_CONFIGURATOR=tracehound, "
        "or pip uninstall opentelemetry-distro."
    )


def post_instrument() -> None:
    """The ``opentelemetry_post_instrument`` hook (idempotent; never raises into the app)."""
    global _done
    if _done:
        return
    _done = True
    try:
        from . import caching, configurator, sqla
        from .compat import disabled_names

        disabled = disabled_names()
        handle_refused()
        if "sqlalchemy" not in disabled and "*" not in disabled:
            sqla.install()
        sqla.install_dbapi_params_hash()
        if "flask_caching" not in disabled and "*" not in disabled:
            caching.install_flask_caching()
        if not configurator.configured:
            from opentelemetry import trace

            from . import lifecycle
            from .codeloc import CodeLocationProcessor

            provider = trace.get_tracer_provider()
            if hasattr(provider, "add_span_processor"):
                provider.add_span_processor(CodeLocationProcessor())
                lifecycle.install_sigterm_flush(provider)
                lifecycle.install_exit_flush(provider)
            lifecycle.install_reloader_guard()
        _warn_foreign_distro()
    except Exception:  # noqa: BLE001 - tracing must never break the app
        _log.exception("tracehound: instrumentation set-up failed; the app runs with upstream spans only")
