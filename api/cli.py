"""Click commands of tracehound.api (heavy imports stay inside the command bodies)."""

from __future__ import annotations

from pathlib import Path

import click


def _opt(*names, envvar, **kw):
    return click.option(*names, envvar=envvar, show_envvar=True, **kw)


def _load_from_db(db: Path, week: str | None) -> dict:
    import duckdb

    from .report import weekly_report

    if not db.exists():
        raise click.ClickException(
            f"no tracehound database at {db}: pass --db FILE (or --url of a running server)"
        )
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as exc:
        raise click.ClickException(
            f"cannot open {db} ({str(exc).splitlines()[0]}); if 'tracehound serve' is running on it, "
            "use --url http://HOST:PORT instead"
        ) from exc
    try:
        return weekly_report(con, week)
    except duckdb.CatalogException as exc:
        raise click.ClickException(f"{db} holds no analyzer tables: is it a tracehound database?") from exc
    finally:
        con.close()


def _load_from_url(url: str, week: str | None, token: str | None) -> dict:
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    query = f"?week={urllib.parse.quote(week)}" if week else ""
    request = urllib.request.Request(f"{url.rstrip('/')}/api/reports/weekly{query}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise click.ClickException(
            f"{url} answered HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc


@click.command()
@_opt("--db", envvar="TRACEHOUND_DB", type=click.Path(dir_okay=False, path_type=Path),
      default=Path("tracehound.duckdb"), show_default=True,
      help="DuckDB file to read (not while 'tracehound serve' holds it: use --url then).")  # fmt: skip
@_opt("--url", envvar="TRACEHOUND_URL", default=None,
      help="Read the report from a running server's API instead, e.g. http://127.0.0.1:8000.")  # fmt: skip
@_opt("--api-token", envvar="TRACEHOUND_API_TOKEN", default=None, help="Bearer token for --url.")
@_opt("--week", envvar="TRACEHOUND_REPORT_WEEK", default=None, metavar="YYYY-Www",
      help="ISO week, e.g. 2026-W47. Default: the current week.")  # fmt: skip
@_opt("--format", "fmt", envvar="TRACEHOUND_REPORT_FORMAT", type=click.Choice(["html", "md", "json"]),
      default="md", show_default=True, help="Output format.")  # fmt: skip
@_opt("--output", "-o", envvar="TRACEHOUND_REPORT_OUTPUT", type=click.Path(dir_okay=False, path_type=Path),
      default=None, help="Write to FILE instead of standard output.")  # fmt: skip
@_opt(
    "--smtp-host",
    envvar="TRACEHOUND_SMTP_HOST",
    default=None,
    help="Also email the report through this SMTP server.",
)
@_opt(
    "--smtp-port", envvar="TRACEHOUND_SMTP_PORT", type=click.IntRange(1, 65535), default=25, show_default=True
)
@_opt("--smtp-user", envvar="TRACEHOUND_SMTP_USER", default=None)
@_opt("--smtp-password", envvar="TRACEHOUND_SMTP_PASSWORD", default=None)
@_opt("--smtp-starttls/--no-smtp-starttls", envvar="TRACEHOUND_SMTP_STARTTLS", default=False,
      help="Upgrade with STARTTLS before login.")  # fmt: skip
@_opt(
    "--smtp-ssl/--no-smtp-ssl", envvar="TRACEHOUND_SMTP_SSL", default=False, help="Implicit TLS (port 465)."
)
@_opt("--mail-from", envvar="TRACEHOUND_MAIL_FROM", default="tracehound@localhost", show_default=True)
@_opt("--mail-to", envvar="TRACEHOUND_MAIL_TO", multiple=True,
      help="Recipient; repeat, or comma-separate (env: comma-separated).")  # fmt: skip
def report(db, url, api_token, week, fmt, output, smtp_host, smtp_port, smtp_user, smtp_password,
           smtp_starttls, smtp_ssl, mail_from, mail_to) -> None:  # fmt: skip
    """Render the weekly report: headline numbers, findings new/open/resolved/regressed against the
    week before, top findings with code locations and fixes, latency and time-breakdown charts.

    \b
    Examples:
      tracehound report --db tracehound.duckdb --week 2026-W47 --format html -o week47.html
      tracehound report --url http://127.0.0.1:8000 --format html --smtp-host mail --mail-to team@example.org
    """
    from tracehound._deps import require_extra

    require_extra("report", "server", ("jinja2", "pygal") if url else ("jinja2", "pygal", "duckdb"))
    from .report import BadWeekError, parse_week, render_report

    try:
        parse_week(week)
    except BadWeekError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from exc
    data = _load_from_url(url, week, api_token) if url else _load_from_db(db, week)
    text = render_report(data, fmt)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote the {fmt} report for {data['week']} to {output}", err=True)
    else:
        click.echo(text, nl=False)
    recipients = [a.strip() for value in mail_to for a in value.split(",") if a.strip()]
    if smtp_host:
        from .report_mail import SmtpSettings, send_report

        settings = SmtpSettings(smtp_host, smtp_port, smtp_user, smtp_password, mail_from, recipients,
                                smtp_starttls, smtp_ssl)  # fmt: skip
        try:
            send_report(data, render_report(data, "md"), render_report(data, "html"),
                        render_report(data, "json"), settings)  # fmt: skip
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        except OSError as exc:  # smtplib.SMTPException is an OSError
            raise click.ClickException(
                f"could not email the report via {smtp_host}:{smtp_port}: {exc}"
            ) from exc
        click.echo(f"emailed the report for {data['week']} to {', '.join(recipients)}", err=True)
    elif recipients:
        raise click.UsageError("--mail-to needs --smtp-host")
