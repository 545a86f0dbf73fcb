"""Click commands of tracehound.instrumentation (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import click


@click.command()
@click.option("--no-probe", is_flag=True, help="Do not contact the export endpoint.")
def doctor(no_probe: bool) -> None:
    """Check what opentelemetry-instrument will trace in this environment.

    Prints the instrumented libraries with versions, what is refused and why, the export
    endpoint and protocol and whether it answers, and one line per problem saying what to do.
    Exits with status 1 when there is a problem.
    """
    from .doctor import diagnose

    report = diagnose(check_endpoint=not no_probe)
    for line in report.lines:
        click.echo(line)
    if report.problems:
        raise SystemExit(1)
