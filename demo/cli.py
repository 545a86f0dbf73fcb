"""Click commands of tracehound.demo (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from tracehound.settings import listener_options


def _location(finding: dict) -> str:
    loc = finding.get("code_location") or {}
    if not loc.get("filepath"):
        return "-"
    path = loc["filepath"]
    with contextlib.suppress(ValueError):  # another drive (Windows)
        path = os.path.relpath(path)
    if path.startswith(".."):
        path = "/".join(Path(loc["filepath"]).parts[-3:])
    where = f"{path}:{loc['lineno']}" if loc.get("lineno") else path
    return f"{where} {loc['function']}()" if loc.get("function") else where


def findings_table(findings: list[dict]) -> str:
    """A plain-text table: kind, endpoint, code location, impact (ms, summed over the run)."""
    rows = [("KIND", "ENDPOINT", "CODE LOCATION", "IMPACT")]
    rows += [(f["kind"], f["endpoint"] or "-", _location(f), f"{f['impact_ms']:,.0f} ms") for f in findings]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>10}" for r in rows
    )


@click.command()
@listener_options(demo=True)
@click.option("--duration", type=click.IntRange(1), default=60, show_default=True, metavar="SECONDS",
              envvar="TRACEHOUND_DEMO_DURATION", show_envvar=True, help="How long to drive load.")  # fmt: skip
@click.option(
    "--exit",
    "exit_after",
    is_flag=True,
    help="Exit after printing the findings (default: serve until Ctrl-C).",
)
@click.option("--database-url", envvar="TRACEHOUND_DEMO_DATABASE_URL", show_envvar=True, default=None,
              help="SQLAlchemy URL for the bookshop (e.g. postgresql+psycopg://...). Default: SQLite.")  # fmt: skip
@click.option("--redis-url", envvar="TRACEHOUND_DEMO_REDIS_URL", show_envvar=True, default=None,
              help="Redis for the bookshop's cache (e.g. redis://127.0.0.1:6379/0). Default: SimpleCache.")  # fmt: skip
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="TRACEHOUND_DEMO_WORKDIR",
              help="Where the bookshop's data, the demo's tracehound.duckdb and the logs go (default: a new temp dir).")  # fmt: skip
def demo(db, host, port, otlp_http_port, otlp_grpc_port, duration, exit_after, database_url, redis_url,
         workdir) -> None:  # fmt: skip
    """Run the demo: tracehound finds real problems in a real Flask app.

    Starts the tracehound server, a demo bookshop (Flask + SQLAlchemy + Flask-Caching, with planted
    N+1 queries, slow queries, cache misses, a slow outbound call and connection churn, each next to
    a clean twin) under opentelemetry-instrument, drives load at it, waits for the analysis, prints
    the findings and the URL to open, then keeps serving until Ctrl-C. With --exit it stops after
    the findings and prints how to serve its database again.

    The spans and findings go to a fresh tracehound.duckdb in the work directory (replaced on every
    run) unless --db is given on the command line; TRACEHOUND_DB is ignored here, so that the demo
    never mixes its findings into a real database.
    """
    import time

    from tracehound._deps import DEMO_MODULES, SERVER_MODULES, require_extra

    require_extra("demo", "server,demo", SERVER_MODULES + DEMO_MODULES)
    from tracehound.settings import ServerSettings

    from .load import drive
    from .runner import Demo, demo_workdir, fresh_demo_db

    workdir = demo_workdir(workdir)
    if db is None:
        db = fresh_demo_db(workdir)  # never the default ./tracehound.duckdb nor $TRACEHOUND_DB
    settings = ServerSettings(db=db, host=host, port=port, otlp_http_port=otlp_http_port,
                              otlp_grpc_port=otlp_grpc_port)  # fmt: skip
    echo = click.echo
    try:
        with Demo(settings, database_url, redis_url, workdir) as run:
            run.check_ports()
            echo(f"Starting the tracehound server (db {db}, logs in {run.workdir}) ...")
            run.start_server()
            echo("Starting the bookshop under opentelemetry-instrument ...")
            run.start_app()
            done = [0]
            with click.progressbar(length=duration, label=f"Driving load at {run.app_url}", width=30) as bar:

                def tick(elapsed: float) -> None:
                    step = min(duration, int(elapsed)) - done[0]
                    if step > 0:
                        bar.update(step)
                        done[0] += step

                result = drive(run.app_url, duration, on_tick=tick)
            run.check_alive()
            failed = sum(result.failures.values())
            echo(f"Sent {result.total:,} requests to {len(result.requests)} routes ({failed} failed).")
            if failed:
                echo(
                    "  failing: " + ", ".join(f"{t} x{n}" for t, n in result.failures.most_common(5)),
                    err=True,
                )
            echo("Waiting for the analysis ...")
            status = run.wait_for_analysis()
            findings = run.findings()
            echo(f"\n{len(findings)} findings from {status.get('traces_analyzed', '?')} traces:\n")
            echo(findings_table(findings))
            if exit_after:
                echo("\nStopping the demo ...")
            else:
                echo(f"\nOpen {run.api_url}/ to see the findings, the traces and the weekly report.")
                echo("Serving until Ctrl-C ...")
            while not exit_after:
                time.sleep(1)
                run.check_alive()
    except KeyboardInterrupt:
        click.echo("\nStopped.", err=True)
    if exit_after:
        echo(look_later(settings))


def look_later(settings) -> str:
    """How to look at a finished demo's results: serve its database again, then open the UI."""
    import shlex

    command = f"tracehound serve --db {shlex.quote(str(settings.db))}"
    if settings.port != 8000:
        command += f" --port {settings.port}"
    return (
        f"The results are in {settings.db}. To look at them, run\n  {command}\n"
        f"then open http://{settings.host}:{settings.port}/ (findings, traces, weekly report)."
    )
