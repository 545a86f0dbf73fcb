"""Server settings shared by ``tracehound serve`` and ``tracehound demo`` (which starts the same server).

Every flag has a ``TRACEHOUND_*`` environment variable (``--otlp-http-port`` reads
``TRACEHOUND_OTLP_HTTP_PORT``); a flag on the command line wins over the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

MIB = 1024 * 1024


@dataclass
class ServerSettings:
    """Where the server listens and stores, and its limits.

    Ports are TCP ports on ``host``; ``max_body_bytes`` bounds an OTLP request body both as sent
    and after gzip decompression (default 16 MiB); ``queue_max_spans`` bounds the spans decoded but
    not yet committed (over it, OTLP/HTTP answers 503 with ``Retry-After`` and gRPC
    ``UNAVAILABLE``). Tokens are optional bearer tokens: ``api_token`` guards the API and HTML,
    ``ingest_token`` guards OTLP ingest.
    """

    db: Path = Path("tracehound.duckdb")
    host: str = "127.0.0.1"
    port: int = 8000
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    max_body_bytes: int = 16 * MIB
    queue_max_spans: int = 200_000
    api_token: str | None = None
    ingest_token: str | None = None
    jaeger_url: str = "http://localhost:16686"
    grafana_url: str = "http://localhost:3000"
    config_file: Path | None = None
    analyze: bool = True
    extra: dict = field(default_factory=dict)


def _opt(*names, envvar, **kw):
    return click.option(*names, envvar=envvar, show_envvar=True, show_default=True, **kw)


def listener_options(func=None, *, demo: bool = False):
    """Click options for the database and the three listeners (used by serve and demo).

    ``demo=True``: ``--db`` reads no environment variable and defaults to ``None`` (the demo makes a
    fresh database in its work directory, so it never mixes its findings into a real one).
    """
    if func is None:
        return lambda f: listener_options(f, demo=demo)
    if demo:
        db = click.option(
            "--db",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="DuckDB file for the demo's spans and findings [default: a fresh tracehound.duckdb "
            "in the work directory; TRACEHOUND_DB is ignored here].",
        )
    else:
        db = _opt(
            "--db",
            envvar="TRACEHOUND_DB",
            type=click.Path(dir_okay=False, path_type=Path),
            default=Path("tracehound.duckdb"),
            help="DuckDB file that holds spans and findings.",
        )
    options = [
        db,
        _opt(
            "--host",
            envvar="TRACEHOUND_HOST",
            default="127.0.0.1",
            help="Interface to bind every listener to. Use 0.0.0.0 only behind a token.",
        ),
        _opt(
            "--port",
            envvar="TRACEHOUND_PORT",
            type=click.IntRange(0, 65535),
            default=8000,
            help="Port of the web UI and REST API.",
        ),
        _opt(
            "--otlp-http-port",
            envvar="TRACEHOUND_OTLP_HTTP_PORT",
            type=click.IntRange(0, 65535),
            default=4318,
            help="Port of the OTLP/HTTP receiver (POST /v1/traces).",
        ),
        _opt(
            "--otlp-grpc-port",
            envvar="TRACEHOUND_OTLP_GRPC_PORT",
            type=click.IntRange(0, 65535),
            default=4317,
            help="Port of the OTLP/gRPC receiver (TraceService/Export).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def server_options(func):
    """Click options for limits, tokens and UI links (serve only; demo uses defaults)."""
    options = [
        _opt(
            "--max-body-bytes",
            envvar="TRACEHOUND_MAX_BODY_BYTES",
            type=click.IntRange(1024),
            default=16 * MIB,
            help="Largest OTLP request body, before and after gzip (bytes).",
        ),
        _opt(
            "--queue-max-spans",
            envvar="TRACEHOUND_QUEUE_MAX_SPANS",
            type=click.IntRange(1),
            default=200_000,
            help="Spans waiting for commit before ingest answers 'retry later'.",
        ),
        _opt(
            "--api-token",
            envvar="TRACEHOUND_API_TOKEN",
            default=None,
            help="Bearer token required by the API and the HTML pages.",
        ),
        _opt(
            "--ingest-token",
            envvar="TRACEHOUND_INGEST_TOKEN",
            default=None,
            help="Bearer token required by OTLP ingest.",
        ),
        _opt(
            "--jaeger-url",
            envvar="TRACEHOUND_JAEGER_URL",
            default="http://localhost:16686",
            help="Base URL of Jaeger's UI, for 'open in Jaeger' links.",
        ),
        _opt(
            "--grafana-url",
            envvar="TRACEHOUND_GRAFANA_URL",
            default="http://localhost:3000",
            help="Base URL of Grafana, for 'open in Grafana Explore' links.",
        ),
        _opt(
            "--config",
            "config_file",
            envvar="TRACEHOUND_CONFIG",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="tracehound.toml with detector thresholds (default: ./tracehound.toml if present).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
