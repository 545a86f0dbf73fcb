"""Click commands of tracehound.analyzer (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click


@click.command()
def analyze() -> None:
    """Re-analyse stored spans and print the findings."""
    raise click.ClickException("'tracehound analyze' is not built yet")
