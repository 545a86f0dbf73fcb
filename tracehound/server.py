"""``tracehound serve``: OTLP/HTTP, OTLP/gRPC, the analyzer worker and the API in one process.

Everything shares one DuckDB connection (DuckDB allows one read-write process per file); each
thread uses its own ``con.cursor()``. The OTLP/HTTP app and the API run as two uvicorn servers and
the gRPC receiver as a ``grpc.aio`` server, all on one asyncio loop in the main thread. Spans are
committed by the writer thread (:mod:`tracehound.collector.writer`); the analyzer worker has its own
thread.

Shutdown on SIGTERM or SIGINT (Ctrl-C): stop accepting, let in-flight requests finish (they wait
for their commit), commit everything queued, stop the analyzer, checkpoint, close, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

from tracehound.settings import ServerSettings

GRACE_S = 10.0
#: DuckDB's buffer pool cap (its default is 80% of RAM, which a long-running server would
#: eventually fill with cached blocks). Queries that need more spill to ``<db>.tmp``. Override with
#: the environment variable ``TRACEHOUND_DUCKDB_MEMORY_LIMIT`` (e.g. ``1GB``).
DUCKDB_MEMORY_LIMIT = "256MB"
#: DuckDB worker threads in ``serve`` (its default is one per core). Its extra worker mostly spins
#: while the writer threads insert: measured on bench/ingest.py's spans (2 cores), 1 thread cut
#: the server's CPU per span from 22.9 to 19.3 µs, kept parallel appends from leaving partly filled
#: row groups (free blocks) behind, and the incremental analyzer kept up better too (0.81 vs 0.88 s
#: of work per second of 100k spans/s ingest, bench/analyzer_steps.py --incremental). Parallelism
#: in serve comes from the two writer threads instead. ``tracehound analyze`` (its own process)
#: keeps DuckDB's default. Override with ``TRACEHOUND_DUCKDB_THREADS``.
DUCKDB_THREADS = "1"
#: Python's GIL switch interval in this process (its default is 5 ms). DuckDB takes the GIL back
#: several times while it inserts a batch from Arrow; with the receivers busy decoding in Python,
#: each of those waits up to one interval. Measured (50 inserts of 2,048 benchmark spans while
#: another thread runs Python): 5 ms -> 3.4-5.6 s, 1 ms -> 2.2 s, 0.2 ms -> 1.5 s.
GIL_SWITCH_INTERVAL_S = 0.0002


class StartupError(SystemExit):
    """Raised (exit status 1) with one line saying why the server cannot start."""

    def __init__(self, message: str):
        print(f"tracehound: error: {message}", file=sys.stderr, flush=True)
        super().__init__(1)


def _bind(host: str, port: int, flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _resolve_host(host: str) -> None:
    """Check that ``--host`` names an address of this machine's resolver (else :class:`StartupError`)."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise StartupError(
            f"cannot resolve --host {host!r} ({reason}): give an IP address or a known name"
        ) from None


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _open(settings: ServerSettings):
    import duckdb

    from tracehound.collector.schema import SchemaError
    from tracehound.collector.store import open_database

    try:
        con = open_database(settings.db)
    except SchemaError as exc:
        raise StartupError(f"{settings.db}: {exc}") from None
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StartupError(
                f"{settings.db} is in use by another process (DuckDB allows one writer per file): "
                "stop it or choose another --db"
            ) from None
        raise StartupError(f"cannot open {settings.db}: {exc}") from None
    limit = os.environ.get("TRACEHOUND_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT)
    try:
        con.execute(f"SET memory_limit = '{limit}'")
    except duckdb.Error as exc:
        raise StartupError(
            f"TRACEHOUND_DUCKDB_MEMORY_LIMIT={limit!r} is not a DuckDB memory size: {exc}"
        ) from None
    threads = os.environ.get("TRACEHOUND_DUCKDB_THREADS", DUCKDB_THREADS).strip()
    if not threads.isdigit() or int(threads) < 1:
        raise StartupError(f"TRACEHOUND_DUCKDB_THREADS={threads!r} is not a whole number >= 1")
    con.execute(f"SET threads = {int(threads)}")
    return con


def _api_app(con, settings: ServerSettings):
    from tracehound.api.app import create_app

    return create_app(con, settings)


def _analyzer_worker(con, settings: ServerSettings):
    """The incremental analyzer, or ``None`` with ``--no-analyzer`` (ingest only)."""
    if not settings.analyze:
        return None
    from tracehound.analyzer.worker import AnalyzerWorker

    return AnalyzerWorker(con, settings)


def _uvicorn_server(app):
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # serve() handles signals for all listeners
            yield

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=GRACE_S,
    )
    return _Server(config)


def serve(settings: ServerSettings) -> None:
    """Run until SIGTERM/SIGINT, then flush and return normally (the CLI exits 0).

    Raises :class:`StartupError` (a ``SystemExit(1)``, after printing one line) when ``--host``
    does not resolve, the database is locked by another process, too new or not ours, or a port is
    taken.
    """
    from tracehound.collector.grpc_receiver import create_grpc_server
    from tracehound.collector.http_receiver import create_otlp_http_app
    from tracehound.collector.writer import SpanWriter

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    _resolve_host(settings.host)
    con = _open(settings)
    http_sock = _bind(settings.host, settings.otlp_http_port, "--otlp-http-port")
    api_app = _api_app(con, settings)
    api_sock = _bind(settings.host, settings.port, "--port")
    writer = SpanWriter(con, settings.queue_max_spans)
    analyzer = _analyzer_worker(con, settings)
    writer.start()
    try:
        asyncio.run(
            _serve_async(
                settings,
                writer,
                http_sock,
                api_app,
                api_sock,
                analyzer,
                create_grpc_server,
                create_otlp_http_app,
            )
        )
    finally:
        writer.stop()
        if analyzer is not None:
            analyzer.stop(timeout=GRACE_S)
        with contextlib.suppress(Exception):
            con.execute("CHECKPOINT")
        con.close()
    print(
        f"tracehound: stopped; {writer.stats.spans_committed} spans committed to {settings.db}",
        file=sys.stderr,
        flush=True,
    )


async def _serve_async(
    settings, writer, http_sock, api_app, api_sock, analyzer, create_grpc_server, create_otlp_http_app
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    grpc_server = create_grpc_server(writer, settings.max_body_bytes, settings.ingest_token)
    grpc_addr = _hostport(settings.host, settings.otlp_grpc_port)
    if settings.otlp_grpc_port:  # probe first: grpcio would log a multi-line error of its own
        _bind(settings.host, settings.otlp_grpc_port, "--otlp-grpc-port").close()
    try:
        grpc_port = grpc_server.add_insecure_port(grpc_addr)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {grpc_addr} (--otlp-grpc-port): {exc}") from None
    if not grpc_port:
        raise StartupError(f"cannot listen on {grpc_addr} (--otlp-grpc-port): address in use?")
    await grpc_server.start()

    servers = [
        _uvicorn_server(create_otlp_http_app(writer, settings.max_body_bytes, settings.ingest_token)),
        _uvicorn_server(api_app),
    ]
    socks = [http_sock, api_sock]
    tasks = [asyncio.create_task(s.serve(sockets=[k])) for s, k in zip(servers, socks, strict=True)]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.01)
    if analyzer is not None:
        analyzer.start()

    http_port = http_sock.getsockname()[1]
    parts = [
        f"OTLP/gRPC {_hostport(settings.host, grpc_port)}",
        f"OTLP/HTTP http://{_hostport(settings.host, http_port)}/v1/traces",
        f"UI http://{_hostport(settings.host, api_sock.getsockname()[1])}",
        "analyzer on" if analyzer is not None else "analyzer off",
        f"db {settings.db}",
    ]
    print("tracehound: " + " · ".join(parts), flush=True)

    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait([stop_task, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    await grpc_server.stop(GRACE_S)
    await asyncio.gather(*tasks, return_exceptions=True)
    stop_task.cancel()
