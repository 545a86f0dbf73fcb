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


def export_target(env: dict) -> tuple[str, str]:
    """``(protocol, traces_url)`` the OTLP span exporter will use."""
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    )
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return protocol, env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol.startswith("http"):
        base = base or "http://localhost:4318"
        return protocol, base.rstrip("/") + "/v1/traces"
    return protocol, base or "http://localhost:4317"


def probe(protocol: str, url: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    """Does the endpoint answer? http: POST an empty export request; grpc: TCP connect."""
    if protocol.startswith("http"):
        content_type = "application/json" if protocol == "http/json" else "application/x-protobuf"
        body = b"{}" if protocol == "http/json" else b""
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return True, f"answers (HTTP {response.status} to an empty export)"
        except urllib.error.HTTPError as exc:
            return exc.code < 500, f"answers with HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return False, f"does NOT answer ({reason})"
    parsed = urllib.parse.urlparse(url if "//" in url else "//" + url)
    try:
        socket.create_connection(
            (parsed.hostname or "localhost", parsed.port or 4317), timeout=timeout_s
        ).close()
        return True, "accepts TCP connections"
    except OSError as exc:
        return False, f"does NOT answer ({exc})"


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
    exporter_names = {ep.name for ep in entry_points(group="opentelemetry_traces_exporter")}
    wanted = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http", "http/json": "otlp_json_http"}
    if env.get("OTEL_TRACES_EXPORTER") == "otlp" and wanted.get(protocol, protocol) not in exporter_names:
        problem(
            (
                f"no span exporter for protocol {protocol} is installed",
                "unset OTEL_EXPORTER_OTLP_PROTOCOL (tracehound uses http/protobuf) or install its exporter",
            )
        )
    if check_endpoint:
        ok, what = probe(protocol, url)
        add(f"  endpoint {what}")
        if not ok:
            problem(
                (
                    f"the trace endpoint {url} does not answer",
                    "start the server with 'tracehound serve', or point OTEL_EXPORTER_OTLP_ENDPOINT at it",
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
