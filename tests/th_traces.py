"""Hand-built traces for analyzer tests: spans shaped exactly like the instrumentation's contract.

``TraceBuilder`` makes one request trace (a Flask SERVER root span plus children); ``rows()`` gives
dicts for :func:`tracehound.collector.store.insert_span_rows`. Times are ms relative to the trace
start; ``BASE_NS`` is 2024-05-06 10:00 UTC (a Monday).
"""

from __future__ import annotations

import itertools
import random

BASE_NS = 1_714_989_600_000_000_000
MS = 1_000_000
_ids = itertools.count(1)


def _hex(n: int, width: int) -> str:
    return f"{n:0{width}x}"


class TraceBuilder:
    """One trace: ``TraceBuilder(route="/books", duration_ms=300)`` then ``.db(...)``, ``.cache(...)``..."""

    def __init__(
        self,
        service="shop",
        route="/books",
        duration_ms=500.0,
        start_ns=BASE_NS,
        method="GET",
        status=200,
        error=False,
        root_parent="",
    ):
        self.trace_id = _hex(random.getrandbits(128), 32)
        self.start_ns = start_ns
        self.service = service
        self.spans: list[dict] = []
        attrs = {"http.request.method": method, "http.response.status_code": str(status)}
        if route is not None:
            attrs["http.route"] = route
        self.root = self.span(
            f"{method} {route}",
            0,
            duration_ms,
            parent=root_parent,
            kind="Server",
            attrs=attrs,
            status="Error" if error else "Unset",
        )

    def span(self, name, start_ms, dur_ms, parent=None, kind="Internal", attrs=None, status="Unset") -> str:
        sid = _hex(next(_ids) * 7919 + random.getrandbits(20), 16)
        self.spans.append(
            {
                "Timestamp": self.start_ns + int(start_ms * MS),
                "TraceId": self.trace_id,
                "SpanId": sid,
                "ParentSpanId": (self.root if parent is None else parent),
                "SpanName": name,
                "SpanKind": kind,
                "ServiceName": self.service,
                "SpanAttributes": dict(attrs or {}),
                "Duration": int(dur_ms * MS),
                "StatusCode": status,
                "ResourceAttributes": {"service.name": self.service},
            }
        )
        return sid

    def db(
        self,
        statement,
        start_ms,
        dur_ms,
        parent=None,
        params_hash=None,
        spelling="db.statement",
        system="postgresql",
        code=("app/views.py", 42, "list_books"),
        relationship=None,
        uselist=None,
    ):
        attrs = {"db.system" if spelling == "db.statement" else "db.system.name": system, spelling: statement}
        if params_hash is not None:
            attrs["tracehound.db.params_hash"] = params_hash
        if code:
            attrs.update(
                {
                    "code.filepath": code[0],
                    "code.lineno": str(code[1]),
                    "code.function": code[2],
                    "code.file.path": code[0],
                    "code.line.number": str(code[1]),
                    "code.function.name": code[2],
                }
            )
        if relationship:
            attrs.update(
                {
                    "tracehound.orm.lazy_load": "true",
                    "tracehound.orm.relationship": relationship,
                    "tracehound.orm.uselist": "true" if uselist else "false",
                }
            )
        return self.span(statement.split(" ", 1)[0], start_ms, dur_ms, parent, "Client", attrs)

    def cache(self, operation, key, hit, start_ms, dur_ms, parent=None, code=("app/views.py", 50, "book")):
        attrs = {"cache.operation": operation, "cache.key": key, "cache.backend": "redis"}
        if hit is not None:
            attrs["cache.hit"] = "true" if hit else "false"
        if code:
            attrs.update({"code.filepath": code[0], "code.lineno": str(code[1]), "code.function": code[2]})
        return self.span(f"cache.{operation}", start_ms, dur_ms, parent, "Client", attrs)

    def http(self, method, url, start_ms, dur_ms, parent=None, status=200, old_names=False):
        attrs = (
            {"http.method": method, "http.url": url, "http.status_code": str(status)}
            if old_names
            else {"http.request.method": method, "url.full": url, "http.response.status_code": str(status)}
        )
        return self.span(method, start_ms, dur_ms, parent, "Client", attrs)

    def connect(self, start_ms, dur_ms, parent=None, new=True, code=("app/db.py", 7, "get_engine")):
        """A SQLAlchemy ``connect`` span; ``new`` marks a new DB-API connection (not a pool checkout)."""
        attrs = {"db.system": "postgresql"}
        if new:
            attrs["tracehound.db.new_connection"] = "true"
        if code:
            attrs.update({"code.filepath": code[0], "code.lineno": str(code[1]), "code.function": code[2]})
        return self.span("connect", start_ms, dur_ms, parent, "Client", attrs)

    def template(self, name, start_ms, dur_ms, parent=None):
        return self.span(
            "jinja2.render", start_ms, dur_ms, parent, "Internal", {"jinja2.template_name": name}
        )

    def rows(self) -> list[dict]:
        return list(self.spans)


def store(con, *traces: TraceBuilder) -> None:
    """Insert the traces' spans into ``otel_traces`` (real DuckDB, slow insert path)."""
    from tracehound.collector.store import insert_span_rows

    insert_span_rows(con, [row for t in traces for row in t.rows()])


def n_plus_one_trace(
    n=10,
    each_ms=8.0,
    gap_ms=1.0,
    route="/books",
    relationship="Book.author",
    uselist=False,
    start_ns=BASE_NS,
    spelling="db.statement",
    params=True,
    between=False,
) -> TraceBuilder:
    """A list page: one query for the books, then one author query per book (the classic N+1)."""
    t = TraceBuilder(route=route, duration_ms=20 + n * (each_ms + gap_ms) + 20, start_ns=start_ns)
    t.db(
        "SELECT books.id, books.title, books.author_id FROM books LIMIT %(param_1)s",
        1,
        5,
        params_hash="p-list",
        spelling=spelling,
        code=("app/views.py", 30, "list_books"),
    )
    at = 10.0
    for i in range(n):
        t.db(
            "SELECT authors.id, authors.name FROM authors WHERE authors.id = %(pk_1)s",
            at,
            each_ms,
            params_hash=f"p{i}" if params else None,
            spelling=spelling,
            relationship=relationship,
            uselist=uselist,
            code=("app/templates/books.html", 12, "render"),
        )
        if between:
            t.span("format_row", at + each_ms + 0.1, 0.5)
        at += each_ms + gap_ms
    return t
