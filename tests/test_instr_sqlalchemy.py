"""SQLAlchemy spans from real Flask apps under ``opentelemetry-instrument``: code location, lazy
loads, parameter hashes; on SQLite (``flask run``), PostgreSQL (``python app.py``) and MariaDB
(gunicorn), all exporting to a real tracehound server."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import free_port
from tests.instr_support import (
    APP_DIR,
    SHOP,
    app_env,
    children_of,
    code_location,
    db_spans,
    get,
    instrument,
    mark_line,
    running_app,
    server_span,
    trace_server,
)


def _statements(spans: list[dict]) -> list[dict]:
    """SQLAlchemy statement spans (not ``connect``)."""
    return [
        s
        for s in db_spans(spans)
        if s["scope"] == "opentelemetry.instrumentation.sqlalchemy" and s["name"] != "connect"
    ]


def _assert_books_trace(spans: list[dict], system: str) -> None:
    root = server_span(spans, "/books")
    assert root["service"] == "shop"
    assert (
        root["attrs"]["http.response.status_code"] == "200" or root["attrs"].get("http.status_code") == "200"
    )
    queries = _statements(children_of(spans, root))
    # 1 list query + 5 lazy loads of Book.author.
    assert len(queries) == 6, [(s["name"], s["scope"]) for s in queries]
    first, lazy = queries[0], queries[1:]
    assert first["attrs"].get("db.system", first["attrs"].get("db.system.name")) == system
    assert "tracehound.orm.lazy_load" not in first["attrs"]
    assert code_location(first) == (str(SHOP), str(mark_line("books_query")), "shop.register.<locals>.books")
    # older names: bare function + namespace; newer: fully qualified (module.qualname)
    assert (first["attrs"]["code.function"], first["attrs"]["code.namespace"]) == (
        "books",
        "shop.register.<locals>",
    )
    for span in lazy:
        a = span["attrs"]
        assert a["tracehound.orm.lazy_load"] == "true"
        assert a["tracehound.orm.relationship"] == "Book.author"
        assert a["tracehound.orm.uselist"] == "false"
        assert "th_author" in a.get("db.statement", a.get("db.query.text", ""))
        path, line, function = code_location(span)
        assert (path, line) == (str(SHOP), str(mark_line("lazy")))
        assert function.startswith("shop.register.<locals>.books")
    hashes = [s["attrs"]["tracehound.db.params_hash"] for s in queries]
    assert all(len(h) == 16 for h in hashes)
    assert len(set(hashes[1:])) == 5  # N+1: same statement, different parameters


def _assert_no_nested_dbapi_spans(spans: list[dict], dbapi_scope: str) -> None:
    """The driver's DB-API span is suppressed under SQLAlchemy's span: one span per query.
    (The dialect's set-up queries on first connect run on the raw connection: they keep their
    driver spans, under SQLAlchemy's ``connect`` span.)"""
    sqlalchemy_ids = {
        s["span_id"]
        for s in spans
        if s["scope"] == "opentelemetry.instrumentation.sqlalchemy" and s["name"] != "connect"
    }
    nested = [s["name"] for s in spans if s["scope"] == dbapi_scope and s["parent"] in sqlalchemy_ids]
    assert nested == []


def _assert_repeat_trace(spans: list[dict]) -> None:
    root = server_span(spans, "/books/<int:book_id>")
    queries = _statements(children_of(spans, root))
    assert len(queries) == 2
    statement = [s["attrs"].get("db.statement", s["attrs"].get("db.query.text")) for s in queries]
    assert statement[0] == statement[1]
    # Same statement, same parameters: the repeated query has the same hash.
    assert (
        queries[0]["attrs"]["tracehound.db.params_hash"] == queries[1]["attrs"]["tracehound.db.params_hash"]
    )
    assert code_location(queries[1])[1] == str(mark_line("repeat"))


def test_sqlite_flask_run(tmp_path):
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(server.otlp_http_endpoint, SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite")
        cmd = instrument("flask", "--app", "shop", "run", "--no-reload", "--port", str(port))
        with running_app(cmd, env, APP_DIR, port) as proc:
            assert len(get(f"http://127.0.0.1:{port}/books")) == 5
            assert get(f"http://127.0.0.1:{port}/authors") == get(f"http://127.0.0.1:{port}/authors/eager")
            get(f"http://127.0.0.1:{port}/books/3")
            assert get(f"http://127.0.0.1:{port}/raw") == [2, 3, 2]
            assert get(f"http://127.0.0.1:{port}/rename/2") == {"renamed": 2}  # raw text() UPDATE: no 500
            get(f"http://127.0.0.1:{port}/pooled")  # the pool already holds a connection
            get(f"http://127.0.0.1:{port}/churn")  # a new engine, so a new connection
        assert proc.returncode in (0, -15), proc.output
        # upstream's "sqlalchemy only instruments ... nothing can be instrumented" is not shown
        assert "nothing can be instrumented" not in proc.output[1]
        spans = server.spans(min_count=20)
    _assert_books_trace(spans, "sqlite")
    _assert_author_loads(spans)
    _assert_repeat_trace(spans)
    # raw DB-API (no SQLAlchemy): the sqlite3 spans get the parameters hash and code location too
    raw = [s for s in children_of(spans, server_span(spans, "/raw")) if s["name"].startswith("SELECT")]
    assert [s["scope"] for s in raw] == ["opentelemetry.instrumentation.sqlite3"] * 3
    hashes = [s["attrs"]["tracehound.db.params_hash"] for s in raw]
    assert hashes[0] == hashes[2] != hashes[1]
    assert all(code_location(s)[:2] == (str(SHOP), str(mark_line("raw"))) for s in raw)
    _assert_new_connections_marked(spans)


def _assert_author_loads(spans):
    """``Author.books`` lazy loads are collections (uselist=true); a ``selectinload`` is a
    relationship load too, but eager: NOT marked lazy."""
    lazy = _statements(children_of(spans, server_span(spans, "/authors")))
    assert len(lazy) == 6, [s["name"] for s in lazy]  # 1 + 5 lazy loads
    for span in lazy[1:]:
        a = span["attrs"]
        assert (
            a["tracehound.orm.lazy_load"],
            a["tracehound.orm.relationship"],
            a["tracehound.orm.uselist"],
        ) == (
            "true",
            "Author.books",
            "true",
        )
        assert code_location(span)[:2] == (str(SHOP), str(mark_line("authors_lazy")))
    assert not [k for k in lazy[0]["attrs"] if k.startswith("tracehound.orm.")]
    eager = _statements(children_of(spans, server_span(spans, "/authors/eager")))
    assert len(eager) == 2, [s["name"] for s in eager]  # authors + one SELECT ... IN for all books
    assert "th_book" in eager[1]["attrs"].get("db.statement", eager[1]["attrs"].get("db.query.text", ""))
    for span in eager:
        assert not [k for k in span["attrs"] if k.startswith("tracehound.orm.")], span["attrs"]
        assert code_location(span)[:2] == (str(SHOP), str(mark_line("authors_eager")))


def _assert_new_connections_marked(spans):
    """Only the connect span that opened a new DB-API connection carries the mark, at the app's line."""

    def connects(route):
        return [s for s in children_of(spans, server_span(spans, route)) if s["name"] == "connect"]

    churn = connects("/churn")
    assert churn and all(s["attrs"].get("tracehound.db.new_connection") == "true" for s in churn)
    assert all(code_location(s)[:2] == (str(SHOP), str(mark_line("churn_connect"))) for s in churn)
    pooled = connects("/pooled")
    assert pooled and all("tracehound.db.new_connection" not in s["attrs"] for s in pooled)


@pytest.mark.services
def test_postgresql_python_app_run(tmp_path, postgres_url):
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint,
            SHOP_DB_URL=postgres_url,
            SHOP_PORT=str(port),
            SHOP_TABLE_SUFFIX="_" + uuid.uuid4().hex[:8],
        )
        with running_app(instrument("python", str(SHOP)), env, APP_DIR, port):
            get(f"http://127.0.0.1:{port}/books")
            get(f"http://127.0.0.1:{port}/books/2")
        spans = server.spans(min_count=20)
    _assert_books_trace(spans, "postgresql")
    _assert_repeat_trace(spans)
    _assert_no_nested_dbapi_spans(spans, "opentelemetry.instrumentation.psycopg")


@pytest.mark.services
def test_mariadb_gunicorn(tmp_path, mariadb_url):
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint, SHOP_DB_URL=mariadb_url, SHOP_TABLE_SUFFIX="_" + uuid.uuid4().hex[:8]
        )
        cmd = instrument("gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "shop:app")
        with running_app(cmd, env, APP_DIR, port):
            get(f"http://127.0.0.1:{port}/books")
            get(f"http://127.0.0.1:{port}/books/4")
        spans = server.spans(min_count=20)
    _assert_books_trace(spans, "mysql")
    _assert_repeat_trace(spans)
    _assert_no_nested_dbapi_spans(spans, "opentelemetry.instrumentation.pymysql")
