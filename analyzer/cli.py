"""Click commands of tracehound.analyzer (heavy imports stay inside the command bodies)."""

from __future__ import annotations

import os
from pathlib import Path

import click

#: DuckDB memory limit for a batch analysis (override: TRACEHOUND_DUCKDB_MEMORY_LIMIT). Measured on
#: 10 M spans: peak RSS 1.87 GB with 1500MB (2.85 GB with DuckDB's default of 80% of RAM), ~7% slower.
ANALYZE_MEMORY_LIMIT = "1500MB"


@click.command()
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRACEHOUND_DB",
    show_envvar=True,
    default=Path("tracehound.duckdb"),
    show_default=True,
    help="DuckDB file with the stored spans.",
)
@click.option(
    "--since", default=None, help="Only traces starting at or after this ISO-8601 time (UTC if no offset)."
)
@click.option("--until", default=None, help="Only traces starting before this ISO-8601 time.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON instead of a table.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TRACEHOUND_CONFIG",
    show_envvar=True,
    default=None,
    help="tracehound.toml with detector thresholds (default: ./tracehound.toml if present).",
)
def analyze(db: Path, since: str | None, until: str | None, as_json: bool, config_file: Path | None) -> None:
    """Re-analyse the stored spans of a time window and print the findings.

    Exit codes: 0 ok; 2 for a missing or locked database, bad dates, a bad config file or a bad
    TRACEHOUND_DUCKDB_MEMORY_LIMIT (DuckDB's memory limit, default 1500MB: keeps peak RSS under 2 GB
    for 10 M spans).
    """
    import json

    from tracehound._deps import require_extra

    require_extra("analyze", "server", ("duckdb", "pyarrow", "numpy"))
    from tracehound.analyzer.config import AnalyzerConfig, ConfigError
    from tracehound.analyzer.engine import analyze as run_analysis
    from tracehound.analyzer.engine import to_ns

    def fail(message: str) -> None:
        click.echo(f"tracehound analyze: {message}", err=True)
        raise SystemExit(2)

    try:
        to_ns(since), to_ns(until)
    except ValueError as e:
        fail(str(e))
    if config_file is None and Path("tracehound.toml").is_file():
        config_file = Path("tracehound.toml")
    try:
        cfg = AnalyzerConfig.load(config_file)
    except ConfigError as e:
        fail(str(e))
    if not db.is_file():
        fail(f"database {db} does not exist; pass --db with the file 'tracehound serve' writes")
    import duckdb
    from tracehound.collector.store import open_database

    try:
        con = open_database(db)
    except duckdb.IOException as e:
        fail(
            f"cannot open {db} ({str(e).splitlines()[0]}); if 'tracehound serve' is running on it, stop it "
            f"or use the web UI / API instead"
        )
    except Exception as e:  # schema too new, corrupt file
        fail(f"cannot open {db}: {e}")
    limit = os.environ.get("TRACEHOUND_DUCKDB_MEMORY_LIMIT", ANALYZE_MEMORY_LIMIT)
    try:
        con.execute(f"SET memory_limit = '{limit}'")
    except duckdb.Error as e:
        con.close()
        fail(f"TRACEHOUND_DUCKDB_MEMORY_LIMIT={limit!r} is not a DuckDB memory size (e.g. 1500MB): {e}")
    try:
        findings = run_analysis(con, since=since, until=until, config=cfg)
    except ValueError as e:
        fail(str(e))
    finally:
        con.close()
    if as_json:
        click.echo(json.dumps(findings, default=str, indent=2))
        return
    if not findings:
        click.echo("No findings.")
        return
    # OCCURRENCES and IMPACT_MS count the analysed window only; OCCURRENCES also shows the all-time total
    rows = [("KIND", "SEVERITY", "ENDPOINT", "CODE LOCATION", "OCCURRENCES", "IMPACT_MS", "TITLE")]
    for f in findings:
        loc = f"{f['code_filepath']}:{f['code_lineno']}" if f["code_filepath"] else "-"
        occ = f"{f['occurrences']}/{f['total_occurrences']}"
        rows.append(
            (f["kind"], f["severity"], f["endpoint"] or "-", loc, occ, f"{f['impact_ms']:.1f}", f["title"])
        )
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(6)]
    for r in rows:
        cells = [r[i][: widths[i]].ljust(widths[i]) for i in range(6)]
        click.echo("  ".join(cells) + "  " + r[6])
    window = (
        f" between {since or 'the first trace'} and {until or 'the last trace'}" if since or until else ""
    )
    click.echo(f"\n{len(findings)} finding(s){window}; OCCURRENCES = in this window / all time.")
