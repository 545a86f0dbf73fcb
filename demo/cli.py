"""Click commands of tracehound.demo (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Run the demo: a real instrumented Flask app, load, and the findings it causes."""
    raise click.ClickException("'tracehound demo' is not built yet")
