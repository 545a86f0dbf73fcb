"""Click commands of tracehound.collector (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Run the OTLP collector, the analyzer and the web UI on one DuckDB file."""
    raise click.ClickException("'tracehound serve' is not built yet")
