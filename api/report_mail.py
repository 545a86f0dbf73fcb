"""Email delivery of the weekly report over SMTP (standard library ``smtplib``).

The message is ``multipart/alternative``: the Markdown text first, the self-contained HTML second
(mail clients show the HTML), plus the JSON as an attachment for tooling.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage


@dataclass
class SmtpSettings:
    """Where and how to send: ``starttls`` upgrades the connection before login (port 587 style);
    ``ssl`` connects with implicit TLS (port 465 style). ``timeout_s`` bounds each SMTP exchange."""

    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None
    mail_from: str = "tracehound@localhost"
    mail_to: list[str] = field(default_factory=list)
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = 30.0


def build_message(
    report: dict, markdown: str, html: str, json_text: str, settings: SmtpSettings
) -> EmailMessage:
    """The report email (subject names the week and the counts of new and regressed findings)."""
    counts = report["counts"]
    message = EmailMessage()
    message["Subject"] = (
        f"tracehound weekly report {report['week']}: {counts['new']} new, {counts['regressed']} regressed, "
        f"{counts['open']} open, {counts['resolved']} resolved"
    )
    message["From"] = settings.mail_from
    message["To"] = ", ".join(settings.mail_to)
    message.set_content(markdown)
    message.add_alternative(html, subtype="html")
    message.add_attachment(
        json_text.encode(),
        maintype="application",
        subtype="json",
        filename=f"tracehound-{report['week']}.json",
    )
    return message


def send_report(report: dict, markdown: str, html: str, json_text: str, settings: SmtpSettings) -> None:
    """Send the report to ``settings.mail_to``.

    Raises ``ValueError`` when there is no recipient, and ``smtplib.SMTPException`` / ``OSError``
    when the server refuses or cannot be reached.
    """
    if not settings.mail_to:
        raise ValueError("no recipient: give --mail-to")
    message = build_message(report, markdown, html, json_text, settings)
    smtp_class = smtplib.SMTP_SSL if settings.ssl else smtplib.SMTP
    with smtp_class(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(message)
