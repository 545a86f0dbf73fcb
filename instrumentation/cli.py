"""Click commands of tracehound.instrumentation (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click


@click.command()
def doctor() -> None:
    """Check what opentelemetry-instrument will trace in this environment."""
    raise click.ClickException("'tracehound doctor' is not built yet")
