"""Realistic OTLP span batches for benchmarks: Flask server spans and SQLAlchemy client spans.

Attribute names and shapes are those emitted by opentelemetry-instrumentation-flask and
-sqlalchemy 0.66b1 (default, old HTTP/DB semantic conventions) plus tracehound's code location
attributes; the resource is what ``opentelemetry-instrument`` sets up.
"""

from __future__ import annotations

import os
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

ROUTES = ["/", "/products", "/products/<int:product_id>", "/cart", "/orders/<int:order_id>", "/search"]
STATEMENTS = [
    "SELECT products.id, products.name, products.price FROM products WHERE products.id = %(pk_1)s",
    "SELECT reviews.id, reviews.body, reviews.stars FROM reviews WHERE %(param_1)s = reviews.product_id",
    "SELECT users.id, users.email FROM users WHERE users.id = %(pk_1)s",
    "INSERT INTO orders (user_id, total, created_at) VALUES (%(user_id)s, %(total)s, %(created_at)s) RETURNING orders.id",
    "SELECT count(*) AS count_1 FROM (SELECT orders.id FROM orders WHERE orders.user_id = %(user_id_1)s) AS anon_1",
]


def _kv(key, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_request(
    n_spans: int = 512, service: str = "shop", seed: int | None = None, start_ns: int | None = None
) -> ExportTraceServiceRequest:
    """One ``ExportTraceServiceRequest`` holding ``n_spans`` spans in traces of 1 server + ~10 db spans."""
    rng = random.Random(seed)
    now = start_ns or time.time_ns()
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(
        [
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.version", "1.45.1"),
            _kv("service.name", service),
            _kv("telemetry.auto.version", "0.66b1"),
            _kv("service.instance.id", "8c6d2a3e4f5a4b6c9d0e1f2a3b4c5d6e"),
            _kv("host.name", "web-1"),
            _kv("process.pid", 4242),
        ]
    )
    flask = rs.scope_spans.add()
    flask.scope.name = "opentelemetry.instrumentation.flask"
    flask.scope.version = "0.66b1"
    sqla = rs.scope_spans.add()
    sqla.scope.name = "opentelemetry.instrumentation.sqlalchemy"
    sqla.scope.version = "0.66b1"
    made = 0
    while made < n_spans:
        trace_id = rng.randbytes(16)
        root_id = rng.randbytes(8)
        route = rng.choice(ROUTES)
        t0 = now + made * 1000
        n_db = min(rng.randint(5, 15), n_spans - made - 1)
        root_dur = 2_000_000 + n_db * 400_000
        root = flask.spans.add(
            trace_id=trace_id,
            span_id=root_id,
            name=f"GET {route}",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=t0,
            end_time_unix_nano=t0 + root_dur,
            flags=0x101,
        )
        root.attributes.extend(
            [
                _kv("http.method", "GET"),
                _kv("http.server_name", "127.0.0.1"),
                _kv("http.scheme", "http"),
                _kv("net.host.name", "127.0.0.1"),
                _kv("net.host.port", 5000),
                _kv("http.host", "127.0.0.1:5000"),
                _kv("http.target", route.replace("<int:product_id>", "17")),
                _kv("net.peer.ip", "127.0.0.1"),
                _kv("net.peer.port", rng.randint(30000, 60000)),
                _kv("http.user_agent", "python-requests/2.32.3"),
                _kv("http.flavor", "1.1"),
                _kv("http.route", route),
                _kv("http.status_code", 200),
            ]
        )
        root.status.code = Status.STATUS_CODE_UNSET
        made += 1
        for i in range(n_db):
            s = t0 + 100_000 + i * 400_000
            stmt = rng.choice(STATEMENTS)
            span = sqla.spans.add(
                trace_id=trace_id,
                span_id=rng.randbytes(8),
                parent_span_id=root_id,
                name=stmt.split(" ", 1)[0] + " shop",
                kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=s,
                end_time_unix_nano=s + rng.randint(50_000, 350_000),
                flags=0x301,
            )
            span.attributes.extend(
                [
                    _kv("db.statement", stmt),
                    _kv("db.system", "postgresql"),
                    _kv("db.name", "shop"),
                    _kv("db.user", "shop"),
                    _kv("net.peer.name", "127.0.0.1"),
                    _kv("net.peer.port", 5432),
                    _kv("code.filepath", os.path.join("/srv/shop", "views.py")),
                    _kv("code.lineno", 40 + i),
                    _kv("code.function", "product_detail"),
                ]
            )
            made += 1
    return request
