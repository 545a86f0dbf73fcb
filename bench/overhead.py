"""Overhead of tracehound's instrumentation on an N+1 page (1 + 30 queries, SQLite).

Run by hand: ``.venv/bin/python bench/overhead.py [--requests 300] [--rounds 3]``.

Three modes, measured side by side in the same run, each in its own process (instrumentation
is process-global), alternating over ``--rounds`` rounds:

* ``none``: the Flask + Flask-SQLAlchemy app, uninstrumented;
* ``upstream``: OpenTelemetry auto-instrumentation only, set up like ``opentelemetry-instrument``
  with the upstream SDK configurator (BatchSpanProcessor + OTLP/HTTP exporter) and the Flask,
  SQLAlchemy and sqlite3 instrumentors (SQLAlchemy with ``skip_dep_check=True``: upstream
  refuses SQLAlchemy 2.1 and would record nothing);
* ``upstream-1span``: the same without the sqlite3 instrumentor, so one span per statement
  like tracehound (which suppresses the DB-API span under SQLAlchemy's): isolates the cost of
  tracehound's extra attributes;
* ``tracehound``: the same app under the real ``opentelemetry-instrument`` launcher with
  tracehound installed (distro defaults, configurator, start-up hook).

Spans go to a throwaway OTLP/HTTP sink in this process that answers 200. Each mode serves
``--requests`` GET /books through Flask's test client after a warm-up; it reports the median
wall latency per request and the process CPU per request (all threads, including the span
export thread; the final flush is inside the measured window). The printed ratios compare
tracehound with upstream (target <= 1.10) and each mode with ``none``. "us per DB span" divides
the extra latency by the 31 statements of the page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_BOOKS = 30
MODES = ["none", "upstream", "upstream-1span", "tracehound"]
EXPLAIN_MODES = ["tracehound-nodup"]  # --explain: tracehound without the dup semconv names


def build_app(db_path: str):
    """The N+1 page: one query for 30 books, then one lazy load of ``Book.author`` per book."""
    from flask import Flask, jsonify
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import ForeignKey, Integer, String, select
    from sqlalchemy.orm import DeclarativeBase, mapped_column, relationship

    class Base(DeclarativeBase):
        pass

    db = SQLAlchemy(model_class=Base)

    class Author(db.Model):
        id = mapped_column(Integer, primary_key=True)
        name = mapped_column(String(80))

    class Book(db.Model):
        id = mapped_column(Integer, primary_key=True)
        title = mapped_column(String(80))
        author_id = mapped_column(ForeignKey("author.id"))
        author = relationship(Author)

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{db_path}"
    db.init_app(app)
    with app.app_context():
        db.create_all()
        for i in range(N_BOOKS):
            db.session.add(Book(title=f"Book {i}", author=Author(name=f"Author {i}")))
        db.session.commit()

    @app.route("/books")
    def books():
        rows = db.session.scalars(select(Book).order_by(Book.id)).all()
        return jsonify([{"title": b.title, "author": b.author.name} for b in rows])

    return app


def setup_upstream(sqlite3_spans: bool = True) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.sdk._configuration import _initialize_components

    _initialize_components()
    FlaskInstrumentor().instrument()
    SQLAlchemyInstrumentor().instrument(skip_dep_check=True)
    if sqlite3_spans:
        SQLite3Instrumentor().instrument()


def child(mode: str, requests: int) -> None:
    """Measure one mode in this process and print a JSON line."""
    if mode.startswith("upstream"):
        setup_upstream(sqlite3_spans=mode == "upstream")
    from opentelemetry import trace

    with tempfile.TemporaryDirectory() as tmp:
        app = build_app(os.path.join(tmp, "bench.sqlite"))
        client = app.test_client()
        for _ in range(50):
            assert client.get("/books").status_code == 200
        provider = trace.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush()
        latencies = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(requests):
            start = time.perf_counter()
            client.get("/books")
            latencies.append(time.perf_counter() - start)
        if hasattr(provider, "force_flush"):
            provider.force_flush()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
    result = {
        "mode": mode,
        "median_ms": statistics.median(latencies) * 1000,
        "cpu_ms": cpu / requests * 1000,
        "wall_ms": wall / requests * 1000,
    }
    if mode.startswith("tracehound"):
        result["codeloc_us"] = codeloc_cost()
    print(json.dumps(result))


def codeloc_cost(calls: int = 20000) -> float:
    """Microseconds per code-location lookup from a 60-frame deep stack of library frames."""
    from tracehound.instrumentation.codeloc import CodeLocator

    locator = CodeLocator()
    code = compile(
        "def deep(n, f):\n    return f() if n == 0 else deep(n - 1, f)\n",
        os.path.join(os.path.dirname(os.__file__), "site-packages", "fake_lib.py"),
        "exec",
    )
    namespace: dict = {}
    exec(code, namespace)

    deep = namespace["deep"]
    assert deep(60, locator.attributes)["code.function"] == "codeloc_cost"  # walks 60 library frames
    start = time.perf_counter()
    for _ in range(calls):
        deep(60, locator.attributes)
    with_lookup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        deep(60, dict)
    without = time.perf_counter() - start
    return (with_lookup - without) / calls * 1e6


class _Sink(BaseHTTPRequestHandler):
    spans_bytes = 0

    def do_POST(self):
        _Sink.spans_bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def run_mode(mode: str, endpoint: str, requests: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEHOUND_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env["OTEL_SERVICE_NAME"] = "bench"
    me = [sys.executable, __file__, "--child", mode, "--requests", str(requests)]
    if mode.startswith("upstream"):
        env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
    if mode.startswith("tracehound"):
        me = ["opentelemetry-instrument", *me]
    if mode == "tracehound-nodup":
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = ""  # upstream's default: old attribute names only
    done = subprocess.run(me, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--explain", action="store_true", help="also measure " + ", ".join(EXPLAIN_MODES))
    parser.add_argument("--child", choices=MODES + EXPLAIN_MODES)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests)
        return

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    modes = MODES + (EXPLAIN_MODES if args.explain else [])
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for round_no in range(args.rounds):
        for mode in modes if round_no % 2 == 0 else reversed(modes):
            results[mode].append(run_mode(mode, endpoint, args.requests))
    sink.shutdown()

    def med(mode, key):
        return statistics.median(r[key] for r in results[mode])

    print(
        f"N+1 page: 1 + {N_BOOKS} queries, SQLite; {args.requests} requests x {args.rounds} rounds per mode"
    )
    print(f"{'mode':<12}{'median latency ms':>20}{'CPU ms/request':>17}")
    for mode in modes:
        print(f"{mode:<12}{med(mode, 'median_ms'):>20.3f}{med(mode, 'cpu_ms'):>17.3f}")
    statements = N_BOOKS + 1
    for key, label in (("median_ms", "latency"), ("cpu_ms", "CPU")):
        up, th, none = med("upstream", key), med("tracehound", key), med("none", key)
        print(
            f"{label}: tracehound/upstream = {th / up:.3f} (target <= 1.10); "
            f"upstream/none = {up / none:.3f}; tracehound/none = {th / none:.3f}"
        )
        print(
            f"{label}: per DB statement, upstream adds {(up - none) / statements * 1000:.1f} us, "
            f"tracehound adds {(th - none) / statements * 1000:.1f} us "
            f"({(th - up) / statements * 1000:+.1f} us vs upstream)"
        )
    th, one = med("tracehound", "cpu_ms"), med("upstream-1span", "cpu_ms")
    print(
        f"CPU: tracehound/upstream-1span = {th / one:.3f}: tracehound's extras (code location, params "
        f"hash, lazy-load tags, dup semconv names) vs upstream with the same 1 span per statement, "
        f"{(th - one) / statements * 1000:+.1f} us per DB statement"
    )
    print(
        f"code location lookup (60 library frames deep): {med('tracehound', 'codeloc_us'):.2f} us per client span"
    )


if __name__ == "__main__":
    main()
