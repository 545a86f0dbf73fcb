"""``tracehound doctor``: what ``opentelemetry-instrument`` will do in this environment.

Prints what will be instrumented (with versions), what is refused and why, the export endpoint
and protocol and whether it answers, and one line per problem saying what to do. Exit status 1
when there is a problem, 0 otherwise. Only the base install is needed (no server extras).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.util._importlib_metadata import entry_points

from . import compat
from .distro import DEFAULTS

TRACEHOUND_EXTRAS = {"flask_caching": ("Flask-Caching", "cache.* spans with cache.hit/key/backend")}


@dataclass
class Report:
    """Doctor findings: ``lines`` to print and ``problems`` as (what, what to do) pairs."""

    lines: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def effective_env(environ=None) -> dict:
    """The environment as the app will see it once tracehound's distro applied its defaults."""
    env = dict(os.environ if environ is None else environ)
    for key, value in DEFAULTS.items():
        env.setdefault(key, value)
    return env


# As opentelemetry.sdk._configuration maps them: any other OTEL_EXPORTER_OTLP_PROTOCOL makes
# the SDK raise "Unsupported OTLP protocol" at start-up (no spans at all).
SDK_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
OTLP_EXPORTERS = {"otlp", "otlp_proto_grpc", "otlp_proto_http"}

# One "To fix" per HTTP status of the probe (an empty OTLP/HTTP export request).
HTTP_FIXES = {
    401: 'set OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer <token>" with the token the server '
    "was started with (tracehound serve --ingest-token / TRACEHOUND_INGEST_TOKEN)",
    403: 'set OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer <token>" with the token the server '
    "was started with (tracehound serve --ingest-token / TRACEHOUND_INGEST_TOKEN)",
    404: "wrong path: set OTEL_EXPORTER_OTLP_ENDPOINT to the server's base URL (http://HOST:4318, "
    "without /v1/traces), or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to the full http://HOST:4318/v1/traces",
    405: "this URL does not take OTLP exports (is it the API/UI port?): point OTEL_EXPORTER_OTLP_ENDPOINT "
    "at the server's OTLP/HTTP port (4318 by default)",
    415: "the endpoint refuses protobuf: use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf against "
    "the server's OTLP/HTTP port (4318 by default)",
}


def otlp_headers(env: dict) -> dict[str, str]:
    """Headers the OTLP span exporter sends: ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` if set, else
    ``OTEL_EXPORTER_OTLP_HEADERS`` (``key=value,...``, URL-encoded values), as the SDK reads them."""
    from opentelemetry.util.re import parse_env_headers

    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    return parse_env_headers(raw, liberal=True)


def span_exporters(env: dict) -> tuple[list[str], list[tuple[str, str]]]:
    """Entry-point names the SDK will load from ``OTEL_TRACES_EXPORTER`` (``otlp`` mapped by
    protocol exactly as the SDK does, default ``grpc``), and the problems found as
    (what, what to do) pairs: SDK disabled, unsupported protocol, no OTLP exporter."""
    problems = []
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        problems.append(
            (
                "OTEL_SDK_DISABLED=true: the SDK records and exports nothing",
                "unset OTEL_SDK_DISABLED (or set it to false)",
            )
        )
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    names = [] if not raw or raw.lower() == "none" else [n.strip() for n in raw.split(",") if n.strip()]
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    resolved = []
    for name in names:
        if name == "otlp":
            if protocol and protocol not in SDK_PROTOCOLS:
                problems.append(
                    (
                        f"OTLP protocol {protocol!r} is not supported by the Python SDK: start-up fails "
                        "with 'Unsupported OTLP protocol' and no span is recorded",
                        "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (tracehound's default) or unset it",
                    )
                )
                continue
            name = SDK_PROTOCOLS[protocol or "grpc"]
        resolved.append(name)
    if not any(name in OTLP_EXPORTERS for name in names):
        problems.append(
            (
                f"OTEL_TRACES_EXPORTER={raw or 'none'}: no span is sent to tracehound "
                + ("(console prints them to stdout)" if "console" in resolved else "(no OTLP exporter)"),
                "unset OTEL_TRACES_EXPORTER (tracehound's default is otlp) or set it to otlp",
            )
        )
    return resolved, problems


def export_target(env: dict) -> tuple[str, str]:
    """``(protocol, traces_url)`` the OTLP span exporter will use (protocol as configured,
    default ``grpc`` as in the SDK; ``otlp_proto_http``/``otlp_proto_grpc`` exporters fix it)."""
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    ).strip()
    exporters = {n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if "otlp" not in exporters and "otlp_proto_http" in exporters:
        protocol = "http/protobuf"
    elif "otlp" not in exporters and "otlp_proto_grpc" in exporters:
        protocol = "grpc"
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return protocol, env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol.startswith("http"):
        base = base or "http://localhost:4318"
        return protocol, base.rstrip("/") + "/v1/traces"
    return protocol, base or "http://localhost:4317"


def probe(
    protocol: str, url: str, timeout_s: float = 2.0, headers: dict | None = None
) -> tuple[bool, str, str | None]:
    """Does the endpoint take spans? ``(ok, what it did, what to do or None)``.

    http: POST an empty protobuf export request with the configured ``headers`` (a 2xx is
    fine; each 4xx gets its own fix from :data:`HTTP_FIXES`); grpc: a TCP connect only."""
    if protocol.startswith("http"):
        request = urllib.request.Request(
            url,
            data=b"",
            method="POST",
            headers={**(headers or {}), "Content-Type": "application/x-protobuf"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return True, f"answers (HTTP {response.status} to an empty export)", None
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                return False, f"answers with HTTP {exc.code}", "the server failed: read its log"
            fix = HTTP_FIXES.get(
                exc.code, "check that the URL is a tracehound (OTLP/HTTP) server's /v1/traces"
            )
            return False, f"answers with HTTP {exc.code} to an empty export", fix
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"does NOT answer ({reason})", None
    parsed = urllib.parse.urlparse(url if "//" in url else "//" + url)
    try:
        socket.create_connection(
            (parsed.hostname or "localhost", parsed.port or 4317), timeout=timeout_s
        ).close()
        return True, "accepts TCP connections", None
    except OSError as exc:
        return False, f"does NOT answer ({exc})", None


def diagnose(environ=None, check_endpoint: bool = True) -> Report:
    """Build the doctor report (no printing)."""
    report = Report()
    add, problem = report.lines.append, report.problems.append
    add(f"tracehound {_version('tracehound')}, Python {sys.version.split()[0]} ({sys.executable})")
    add("")
    add("Instrumentation (what opentelemetry-instrument will trace):")
    for status in compat.instrumentation_statuses():
        lib = f"{status.library} {status.library_version}" if status.library else "(no library check)"
        dist = f"{status.distribution} {status.version}"
        if status.state == "active":
            add(f"  ok       {status.name:<14} {lib:<24} by {dist}")
        elif status.state == "forced":
            add(
                f"  ok       {status.name:<14} {lib:<24} by tracehound (upstream {dist} pins {status.required})"
            )
        elif status.state == "refused":
            add(f"  REFUSED  {status.name:<14} {lib:<24} {status.describe_refusal()}")
            problem(
                (
                    f"{status.library} {status.library_version} is not traced "
                    f"({compat.LOSSES.get(status.name, 'its spans are lost')})",
                    f"pip install '{status.required}' or a {status.distribution} release supporting it",
                )
            )
        elif status.state == "disabled":
            add(f"  off      {status.name:<14} {lib:<24} disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
        else:
            add(f"  -        {status.name:<14} not installed")
    for name, (dist_name, what) in TRACEHOUND_EXTRAS.items():
        v = _version(dist_name)
        if v:
            add(f"  ok       {name:<14} {dist_name + ' ' + v:<24} by tracehound ({what})")
        else:
            add(f"  -        {name:<14} not installed")
    add("")

    env = effective_env(environ)
    distros = [ep.name for ep in entry_points(group="opentelemetry_distro")]
    chosen = env.get("OTEL_PYTHON_DISTRO") or (distros[0] if distros else None)
    add(f"Distro: {chosen} (installed: {', '.join(distros) or 'none'})")
    if chosen != "tracehound":
        problem(
            (
                f"opentelemetry-instrument will use the distro '{chosen}', not tracehound's defaults",
                "set OTEL_PYTHON_DISTRO=tracehound and OTEL_PYTHON_CONFIGURATOR=tracehound "
                "(or pip uninstall opentelemetry-distro)",
            )
        )
    elif len(distros) > 1 and not env.get("OTEL_PYTHON_DISTRO"):
        problem(
            (
                f"several distros are installed ({', '.join(distros)}); which one wins depends on install order",
                "set OTEL_PYTHON_DISTRO=tracehound and OTEL_PYTHON_CONFIGURATOR=tracehound",
            )
        )

    protocol, url = export_target(env)
    add(
        f"Export: traces -> {url} ({protocol}); traces exporter {env.get('OTEL_TRACES_EXPORTER')}, "
        f"metrics {env.get('OTEL_METRICS_EXPORTER')}, logs {env.get('OTEL_LOGS_EXPORTER')}"
    )
    exporters, exporter_problems = span_exporters(env)
    for item in exporter_problems:
        problem(item)
    exporter_names = {ep.name for ep in entry_points(group="opentelemetry_traces_exporter")}
    missing = [name for name in exporters if name not in exporter_names]
    if missing:
        problem(
            (
                f"span exporter(s) {', '.join(missing)} not installed (the SDK fails at start-up)",
                "unset OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_TRACES_EXPORTER (tracehound uses otlp over "
                "http/protobuf) or install the exporter package",
            )
        )
    headers = otlp_headers(env)
    if check_endpoint:
        ok, what, fix = probe(protocol, url, headers=headers)
        sent = f" (sent headers: {', '.join(sorted(headers))})" if headers else ""
        add(f"  endpoint {what}{sent}")
        if not ok:
            problem(
                (
                    f"the trace endpoint {url} does not answer"
                    if fix is None
                    else f"the trace endpoint {url} {what}",
                    fix
                    or "start the server with 'tracehound serve', or point OTEL_EXPORTER_OTLP_ENDPOINT at it",
                )
            )
    add("")
    if report.problems:
        add(f"Problems ({len(report.problems)}):")
        for what, todo in report.problems:
            add(f"  - {what}. To fix: {todo}.")
    else:
        add("No problems found.")
    return report
