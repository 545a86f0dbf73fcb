"""Click commands of tracehound.api (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click


@click.command()
def report() -> None:
    """Render the weekly report."""
    raise click.ClickException("'tracehound report' is not built yet")
