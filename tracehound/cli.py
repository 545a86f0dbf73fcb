"""The ``tracehound`` command.

Each component owns its subcommands in its own ``cli`` module; this file only gathers them.
Those modules import heavy dependencies (duckdb, fastapi, grpcio) inside the command bodies, so
``tracehound doctor`` works in a Flask app's environment that has only the base install.
"""

from __future__ import annotations

import click

from tracehound import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tracehound")
def main() -> None:
    """tracehound: find N+1 queries, slow queries, cache misses and blocking HTTP calls in Flask
    apps, from their OpenTelemetry traces.

    \b
    Quick start:
      tracehound demo                      # see it find real problems in a demo app
      tracehound serve                     # collector + analyzer + web UI on one DuckDB file
      opentelemetry-instrument --service_name shop flask run   # in your app's environment
    """


def _register() -> None:
    from tracehound.analyzer.cli import analyze
    from tracehound.api.cli import report
    from tracehound.collector.cli import serve
    from tracehound.demo.cli import demo
    from tracehound.instrumentation.cli import doctor

    for command in (demo, serve, analyze, report, doctor):
        main.add_command(command)


_register()
