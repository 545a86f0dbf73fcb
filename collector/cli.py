"""Click commands of tracehound.collector (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click

from tracehound.settings import listener_options, server_options


@click.command()
@listener_options
@server_options
@click.option(
    "--analyzer/--no-analyzer",
    "analyze",
    envvar="TRACEHOUND_ANALYZER",
    show_envvar=True,
    default=True,
    show_default=True,
    help="Run the analyzer worker in this process (off: ingest and API only, e.g. for bench/ingest.py).",
)
def serve(**options) -> None:
    """Run the OTLP collector, the analyzer and the web UI on one DuckDB file.

    Prints one line naming each listener, then serves until SIGTERM or Ctrl-C, which commit
    every accepted span and exit 0. Exits 1 with one line if the database is locked by another
    process or a port is taken; exits 2 with one line for an invalid analyzer config
    (``--config`` / ``TRACEHOUND_CONFIG`` / ``./tracehound.toml``), checked before anything starts.
    """
    from tracehound._deps import SERVER_MODULES, require_extra

    require_extra("serve", "server", SERVER_MODULES)
    from tracehound.server import serve as run_server
    from tracehound.settings import ServerSettings

    settings = ServerSettings(**options)
    if settings.analyze:
        from tracehound.analyzer.config import ConfigError
        from tracehound.analyzer.worker import load_config

        try:
            load_config(settings)
        except ConfigError as e:
            click.echo(f"tracehound serve: {e}", err=True)
            raise SystemExit(2) from None
    run_server(settings)
