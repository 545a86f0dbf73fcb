"""The weekly report on a real DuckDB file filled through the analyzer's tables.

Four findings cover the four statuses (new, open, regressed, resolved) plus one too old to list;
headline numbers are checked against values computed here from the rows inserted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from conftest import free_port
from tracehound.api.report import BadWeekError, parse_week, render_report, weekly_report
from tracehound.collector.store import open_database

from tracehound.cli import main

WEEK = "2026-W10"
_, START, END = parse_week(WEEK)
PREV = START - dt.timedelta(days=7)
OLD = START - dt.timedelta(days=21)


def _summary(trace_id, endpoint, start, duration_ms, is_error=False, service="shop"):
    ns = int(duration_ms * 1e6)
    return (trace_id, service, endpoint, "GET", 500 if is_error else 200, start, ns, is_error, 5,
            2, ns // 2, 1, 1, 0, ns // 10, 0, 0, ns // 10, ns - ns // 2 - 2 * (ns // 10))  # fmt: skip


def _finding(con, fid, kind, title, endpoint, occurrence_times):
    con.execute(
        "INSERT INTO findings (id, fingerprint, kind, severity, service, endpoint, title, occurrences, "
        "first_seen, last_seen, impact_ms, evidence, example_trace_ids, code_filepath, code_lineno, "
        "code_function, fix_hint, updated_at) VALUES (?, ?, ?, 'medium', 'shop', ?, ?, ?, ?, ?, ?, '{}', ?, "
        "'/app/views.py', 42, 'book_list', 'Eager-load Book.author with selectinload()', now())",
        [fid, fid * 4, kind, endpoint, title, len(occurrence_times), min(occurrence_times),
         max(occurrence_times), 10.0 * len(occurrence_times), [f"{fid}trace"]],
    )  # fmt: skip
    for i, ts in enumerate(occurrence_times):
        con.execute(
            "INSERT INTO finding_occurrences (finding_id, trace_id, timestamp, impact_ms, span_count, "
            "duration_ms, span_ids) VALUES (?, ?, ?, 10.0, 6, 12.5, [1])",
            [fid, f"{fid}-{i}", ts],
        )


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "th.duckdb"
    con = open_database(path)
    rows, durations = [], {}
    for i in range(200):  # this week: /books slow-ish, /authors fast, 10 errors
        endpoint = "/books" if i % 2 else "/authors"
        ms = (50 + i) if endpoint == "/books" else (5 + i % 7)
        durations.setdefault(endpoint, []).append(ms)
        rows.append(
            _summary(f"t{i}", endpoint, START + dt.timedelta(hours=i % 160), ms, is_error=i % 20 == 0)
        )
    for i in range(50):  # the week before
        rows.append(_summary(f"p{i}", "/books", PREV + dt.timedelta(hours=i), 30))
    rows.append(_summary("late", "/books", END + dt.timedelta(hours=1), 9999))  # next week: ignored
    columns = ("trace_id, service, endpoint, http_method, http_status_code, start, duration_ns, is_error, "
               "span_count, db_count, db_ns, cache_count, cache_hits, cache_misses, cache_ns, http_count, "
               "http_ns, template_ns, self_ns")  # fmt: skip
    con.executemany(f"INSERT INTO trace_summaries ({columns}) VALUES ({', '.join(['?'] * 19)})", rows)
    day = dt.timedelta(days=1)
    _finding(con, "a" * 16, "n_plus_one_query", "N+1 on Book.author", "/books", [PREV + day, START + day])
    _finding(con, "b" * 16, "slow_query", "Slow <script>alert(1)</script> search", "/search",
             [START + 2 * day, START + 3 * day])  # fmt: skip
    _finding(con, "c" * 16, "repeated_query", "Repeated VAT query", "/cart", [OLD, START + 4 * day])
    _finding(con, "d" * 16, "connection_churn", "Engine per request", "/inventory", [PREV + 2 * day])
    _finding(con, "e" * 16, "cache_miss_ratio", "Old problem", "/recs", [OLD])
    con.close()
    return path, durations


@pytest.fixture(scope="module")
def report(db_path):
    import duckdb

    con = duckdb.connect(str(db_path[0]), read_only=True)
    try:
        return weekly_report(con, WEEK)
    finally:
        con.close()


def test_headline_numbers(report, db_path):
    head = report["headline"]
    assert (report["week"], report["previous_week"]) == (WEEK, "2026-W09")
    assert report["start"] == "2026-03-02T00:00:00Z" and report["end"] == "2026-03-09T00:00:00Z"
    assert head["requests"] == 200 and head["errors"] == 10 and head["error_rate"] == pytest.approx(0.05)
    assert head["previous"]["requests"] == 50 and head["previous"]["p95_ms"] == pytest.approx(30)
    by_route = {r["endpoint"]: r for r in report["routes"]}
    for endpoint, values in db_path[1].items():
        expected = statistics.quantiles(values, n=100, method="inclusive")[94]
        assert by_route[endpoint]["p95_ms"] == pytest.approx(expected, abs=0.01)
        assert by_route[endpoint]["requests"] == 100
    assert by_route["/books"]["previous_p95_ms"] == pytest.approx(30)
    assert by_route["/books"]["breakdown_ms"]["db"] == pytest.approx(
        statistics.mean(db_path[1]["/books"]) / 2, 0.01
    )
    assert len(by_route["/books"]["daily_p95_ms"]) == 7 + 3  # 7 days this week, 3 days of last week's rows


def test_finding_statuses_against_the_previous_week(report):
    status = {f["id"][0]: s for s, items in report["findings"].items() for f in items}
    assert status == {"a": "open", "b": "new", "c": "regressed", "d": "resolved"}
    assert report["counts"] == {"new": 1, "regressed": 1, "open": 1, "resolved": 1}
    top = report["top_findings"]
    assert [f["id"][0] for f in top] == ["b", "a", "c"]  # by impact this week (20, 10, 10 ms), then id
    assert top[0]["impact_ms"] == 20.0 and top[0]["occurrences"] == 2
    assert top[1]["code_location"] == {"filepath": "/app/views.py", "lineno": 42, "function": "book_list"}
    assert top[1]["fix_hint"].startswith("Eager-load")


def test_html_is_self_contained_with_inline_svg_charts(report):
    html = render_report(report, "html")
    assert html.count("<svg") == 2 and "p95 latency per day" in html and "Where the time goes" in html
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)
    assert "<script" not in html.lower() and "@import" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # finding titles are escaped
    leftovers = re.findall(r"https?://[^\s\"'<>]+", html)
    assert set(leftovers) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # XML namespaces
    assert "/app/views.py:42 in book_list" in html


def test_markdown_and_json(report):
    md = render_report(report, "md")
    assert md.startswith("# tracehound weekly report 2026-W10")
    assert "| requests | 200 | 50 |" in md and "| error rate | 5.00% | 0.00% |" in md
    assert "1 new, 1 regressed, 1 open, 1 resolved" in md
    assert "`/app/views.py:42 in book_list`" in md
    assert json.loads(render_report(report, "json")) == json.loads(json.dumps(report, default=str))
    with pytest.raises(ValueError, match="html, md or json"):
        render_report(report, "pdf")
    with pytest.raises(BadWeekError):
        parse_week("2026-47")


def test_report_command(db_path, tmp_path):
    out = tmp_path / "week.html"
    result = CliRunner().invoke(
        main, ["report", "--db", str(db_path[0]), "--week", WEEK, "--format", "html", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text().count("<svg") == 2
    md = CliRunner().invoke(main, ["report", "--db", str(db_path[0]), "--week", WEEK, "--format", "md"])
    assert md.exit_code == 0 and "| requests | 200 | 50 |" in md.output
    bad = CliRunner().invoke(main, ["report", "--db", str(db_path[0]), "--week", "W10"])
    assert bad.exit_code == 2 and "2026-W47" in bad.output
    missing = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "none.duckdb")])
    assert missing.exit_code == 1 and "no tracehound database" in missing.output
    no_smtp = CliRunner().invoke(main, ["report", "--db", str(db_path[0]), "--mail-to", "a@example.org"])
    assert no_smtp.exit_code == 2 and "--smtp-host" in no_smtp.output


def test_report_command_reads_a_running_servers_api(report, tmp_path):
    body = json.dumps(report).encode()
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = CliRunner().invoke(main, ["report", "--url", url, "--api-token", "s3", "--week", WEEK])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert seen == [(f"/api/reports/weekly?week={WEEK}", "Bearer s3")]
    assert "| requests | 200 | 50 |" in result.output
    down = CliRunner().invoke(main, ["report", "--url", f"http://127.0.0.1:{free_port()}"])
    assert down.exit_code == 1 and "cannot reach" in down.output


def test_report_email_through_a_local_smtp_server(db_path):
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd hook name)
            self.envelopes.append(envelope)
            return "250 OK"

    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        result = CliRunner().invoke(
            main,
            ["report", "--db", str(db_path[0]), "--week", WEEK, "--format", "json", "--smtp-host", "127.0.0.1",
             "--smtp-port", str(controller.port), "--mail-from", "th@example.org",
             "--mail-to", "dev@example.org,ops@example.org"],
        )  # fmt: skip
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["week"] == WEEK
    [envelope] = handler.envelopes
    assert envelope.mail_from == "th@example.org"
    assert envelope.rcpt_tos == ["dev@example.org", "ops@example.org"]
    from email import message_from_bytes, policy

    message = message_from_bytes(envelope.content, policy=policy.default)
    assert (
        message["Subject"].strip()
        == "tracehound weekly report 2026-W10: 1 new, 1 regressed, 1 open, 1 resolved"
    )
    html = message.get_body(("html",)).get_content()
    assert html.count("<svg") == 2
    assert "| requests | 200 | 50 |" in message.get_body(("plain",)).get_content()
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == "tracehound-2026-W10.json"


def test_top_routes_include_a_slow_rarely_hit_route_and_the_headline_reads_well(tmp_path):
    """Eight busy fast routes (60 requests of 2-4 ms each) and one export hit twice at 2.5 s: by
    request count the export would not make the top five; by total time it leads. The week before
    had no traffic, and the export's finding occurred once."""
    con = open_database(tmp_path / "th.duckdb")
    rows = [
        _summary(f"f{r}-{i}", f"/fast/{r}", START + dt.timedelta(minutes=i), 2 + i % 3)
        for r in range(8)
        for i in range(60)
    ]
    rows += [_summary(f"x{i}", "/reports/export", START + dt.timedelta(hours=i), 2500) for i in range(2)]
    columns = ("trace_id, service, endpoint, http_method, http_status_code, start, duration_ns, is_error, "
               "span_count, db_count, db_ns, cache_count, cache_hits, cache_misses, cache_ns, http_count, "
               "http_ns, template_ns, self_ns")  # fmt: skip
    con.executemany(f"INSERT INTO trace_summaries ({columns}) VALUES ({', '.join(['?'] * 19)})", rows)
    _finding(
        con, "f" * 16, "slow_query", "Slow export query", "/reports/export", [START + dt.timedelta(hours=1)]
    )
    try:
        report = weekly_report(con, WEEK)
    finally:
        con.close()
    routes = [r["endpoint"] for r in report["routes"]]
    assert routes[0] == "/reports/export" and report["routes"][0]["total_ms"] == pytest.approx(5000)
    assert len(routes) == 5  # the top five by total time already hold the slowest route
    assert report["headline"]["p95_ms_by_route"][0]["endpoint"] == "/reports/export"
    assert report["headline"]["previous"]["requests"] == 0
    for fmt in ("md", "html"):
        text = render_report(report, fmt)
        assert "/reports/export" in text.split("Top findings")[0]  # in the top routes table
        assert "n/a" not in text and "1 occurrences" not in text
        assert "1 occurrence," in text
    html = render_report(report, "html")
    assert "p95 latency (no requests the week before)" in html
    assert re.search(r"^\| p95 latency \| [\d,.]+ ms \| no requests \|$", render_report(report, "md"), re.M)


def test_the_slowest_routes_join_the_busiest_ones(tmp_path):
    """Six busy routes (100 requests at 100-150 ms: 10-15 s each) and one slow route hit ten times at
    900 ms (9 s in all, less than any busy one): the table holds the top five by total time plus the
    slowest by p95, by total time; the sixth busy route is left out."""
    con = open_database(tmp_path / "th.duckdb")
    rows = [
        _summary(f"b{r}-{i}", f"/busy/{r}", START + dt.timedelta(minutes=i), 100 + 10 * r)
        for r in range(6)
        for i in range(100)
    ]
    rows += [_summary(f"s{i}", "/slow", START + dt.timedelta(hours=i), 900) for i in range(10)]
    columns = ("trace_id, service, endpoint, http_method, http_status_code, start, duration_ns, is_error, "
               "span_count, db_count, db_ns, cache_count, cache_hits, cache_misses, cache_ns, http_count, "
               "http_ns, template_ns, self_ns")  # fmt: skip
    con.executemany(f"INSERT INTO trace_summaries ({columns}) VALUES ({', '.join(['?'] * 19)})", rows)
    try:
        report = weekly_report(con, WEEK)
    finally:
        con.close()
    routes = [r["endpoint"] for r in report["routes"]]
    assert routes == ["/busy/5", "/busy/4", "/busy/3", "/busy/2", "/busy/1", "/slow"]
    assert [r["total_ms"] for r in report["routes"]] == sorted(
        (r["total_ms"] for r in report["routes"]), reverse=True
    )


def _self_signed_cert(directory) -> tuple[str, str]:
    """A self-signed certificate for IP 127.0.0.1 (valid one day) and its key: PEM file paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def test_report_email_with_starttls_and_login(db_path, tmp_path, monkeypatch):
    """A real aiosmtpd server that requires STARTTLS before AUTH (self-signed certificate, trusted
    through SSL_CERT_FILE as an operator would) and checks the password; without --smtp-starttls the
    server offers no AUTH and the command fails. (A wrong password is not tried: aiosmtpd 1.4.6 does
    not answer a refused AUTH over TLS, the client waits for its 30 s timeout.)"""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed_cert(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"reports",
            b"s3cret",
        )
        logins.append((mechanism, auth_data.login, session.ssl is not None, ok))
        return AuthResult(success=ok)

    class Collect:
        def __init__(self):
            self.sessions = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd hook name)
            self.sessions.append((session.authenticated, session.ssl is not None, envelope.rcpt_tos))
            return "250 OK"

    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), tls_context=tls,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    for name in [k for k in os.environ if k.startswith("TRACEHOUND_")]:
        monkeypatch.delenv(name)
    base = ["report", "--db", str(db_path[0]), "--week", WEEK, "--format", "md", "--smtp-host", "127.0.0.1",
            "--mail-from", "th@example.org", "--mail-to", "dev@example.org", "--smtp-user", "reports"]  # fmt: skip
    controller.start()
    try:
        port = ["--smtp-port", str(controller.port)]
        sent = CliRunner().invoke(main, [*base, *port, "--smtp-starttls", "--smtp-password", "s3cret"])
        plain = CliRunner().invoke(main, [*base, *port, "--smtp-password", "s3cret"])
    finally:
        controller.stop()
    assert sent.exit_code == 0, sent.output
    assert handler.sessions == [(True, True, ["dev@example.org"])]  # delivered once: logged in, over TLS
    assert logins == [("PLAIN", b"reports", True, True)]  # the password never went over plain text
    assert plain.exit_code != 0 and "could not email the report" in plain.output  # no TLS: refused
