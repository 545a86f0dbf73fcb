"""Test data for the API: real spans in ``otel_traces`` and the analyzer's tables filled as the
analyzer would (findings, occurrences, trace summaries), in a real DuckDB file.

``populate(con)`` builds a small shop: ``GET /books`` with an N+1 over authors (10 lazy loads per
request), ``GET /books/<int:id>`` with cache lookups, and ``GET /authors`` with a slow query.
``EVIL`` strings go into span names, statements, service names, attribute values and finding
fields when ``evil=True``, to check that they render inert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random

from tracehound.collector.store import insert_span_rows

BASE = dt.datetime(2026, 11, 16, 10, 0, 0)  # Monday of ISO week 2026-W47, naive UTC
EPOCH = dt.datetime(1970, 1, 1)
MS = 1_000_000
EVIL = "<script>alert('x')</script>\"' onmouseover=\"alert(1)\" javascript:alert(2)"
EVIL_URL = "javascript:alert(3)"


def ns(t: dt.datetime) -> int:
    return int((t - EPOCH).total_seconds()) * 1_000_000_000 + t.microsecond * 1000


def hexid(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _span(trace, sid, parent, name, start, dur_ms, service, kind="Internal", attrs=None, status="Unset"):
    return {
        "Timestamp": start,
        "TraceId": trace,
        "SpanId": sid,
        "ParentSpanId": parent,
        "SpanName": name,
        "SpanKind": kind,
        "ServiceName": service,
        "ResourceAttributes": {"service.name": service},
        "ScopeName": "tests",
        "SpanAttributes": attrs or {},
        "Duration": int(dur_ms * MS),
        "StatusCode": status,
    }


def _summary(
    trace,
    service,
    route,
    start_dt,
    dur_ms,
    *,
    db=0,
    db_ms=0.0,
    hits=0,
    misses=0,
    cache_ms=0.0,
    tpl_ms=0.0,
    status=200,
):
    return (
        trace, service, route, "GET", status, start_dt, int(dur_ms * MS), status >= 500, 1 + db + hits + misses,
        db, int(db_ms * MS), hits + misses, hits, misses, int(cache_ms * MS), 0, 0, int(tpl_ms * MS),
        int(max(dur_ms - db_ms - cache_ms - tpl_ms, 0) * MS),
    )  # fmt: skip


def populate(con, *, evil: bool = False, traces_per_route: int = 40, seed: int = 7) -> dict:
    """Fill ``con`` and return ``{"n1_id", "slow_id", "n1_trace", "n1_span_ids", "books_trace",
    "service", "evil_id" (with evil)}``."""
    rng = random.Random(seed)
    service = EVIL if evil else "shop"
    slow_route = EVIL + "/authors" if evil else "/authors"
    sql_author = EVIL if evil else "SELECT authors.id, authors.name FROM authors WHERE authors.id = %(pk_1)s"
    spans, summaries, occurrences = [], [], []
    n1_traces, n1_span_ids = [], {}
    code = {"code.filepath": "shop/views.py", "code.lineno": "42", "code.function": "list_books",
            "code.file.path": "shop/views.py", "code.line.number": "42", "code.function.name": "list_books"}  # fmt: skip
    for i in range(traces_per_route):
        start_dt = BASE + dt.timedelta(minutes=3 * i, seconds=rng.random())
        # GET /books: 1 list query + 10 lazy author loads + a template.
        trace, root = hexid(rng, 32), hexid(rng, 16)
        t = ns(start_dt)
        n_db = 11
        author_ms = 1.5 + rng.random()
        dur = 5 + n_db * author_ms + 4
        spans.append(_span(trace, root, "", EVIL if evil else "GET /books", t, dur, service, "Server",
                           {"http.route": "/books", "http.request.method": "GET", "http.response.status_code": "200",
                            "user.note": EVIL if evil else "ok"}))  # fmt: skip
        spans.append(_span(trace, hexid(rng, 16), root, "SELECT shop", t + 1 * MS, 2.0, service, "Client",
                           {"db.system": "postgresql", "db.statement": "SELECT books.id, books.title FROM books", **code}))  # fmt: skip
        ids = []
        for k in range(n_db - 1):
            sid = hexid(rng, 16)
            ids.append(sid)
            spans.append(_span(trace, sid, root, "SELECT shop", t + int((4 + k * author_ms) * MS), author_ms - 0.2,
                               service, "Client",
                               {"db.system": "postgresql", "db.statement": sql_author,
                                "tracehound.orm.lazy_load": "true", "tracehound.orm.relationship": "Book.author",
                                "url.full": EVIL_URL if evil else "", **{**code, "code.lineno": "57",
                                                                         "code.line.number": "57"}}))  # fmt: skip
        spans.append(_span(trace, hexid(rng, 16), root, "jinja2.render", t + int((dur - 4) * MS), 3.5, service,
                           attrs={"jinja2.template_name": "books.html"}))  # fmt: skip
        summaries.append(
            _summary(trace, service, "/books", start_dt, dur, db=n_db, db_ms=n_db * author_ms, tpl_ms=3.5)
        )
        n1_traces.append(trace)
        n1_span_ids[trace] = ids
        occurrences.append((trace, start_dt, (n_db - 2) * author_ms, n_db - 1, (n_db - 1) * author_ms, ids))

        # GET /books/<int:id>: cache get (hit 3 of 4), maybe a query.
        trace2, root2 = hexid(rng, 32), hexid(rng, 16)
        start2 = start_dt + dt.timedelta(seconds=30)
        t2 = ns(start2)
        hit = i % 4 != 0
        dur2 = 3 + (0 if hit else 6) + rng.random()
        status = 500 if i == 5 else 200
        spans.append(_span(trace2, root2, "", "GET /books/<int:id>", t2, dur2, service, "Server",
                           {"http.route": "/books/<int:id>", "http.response.status_code": str(status)},
                           "Error" if status == 500 else "Unset"))  # fmt: skip
        spans.append(_span(trace2, hexid(rng, 16), root2, "cache.get", t2 + MS // 2, 0.6, service, "Client",
                           {"cache.operation": "get", "cache.hit": str(hit).lower(), "cache.key": "book:{n}"}))  # fmt: skip
        if not hit:
            spans.append(_span(trace2, hexid(rng, 16), root2, "SELECT shop", t2 + 2 * MS, 5.5, service, "Client",
                               {"db.system": "postgresql", "db.statement": "SELECT * FROM books WHERE id = %(id)s"}))  # fmt: skip
        summaries.append(_summary(trace2, service, "/books/<int:id>", start2, dur2, db=0 if hit else 1,
                                  db_ms=0 if hit else 5.5, hits=int(hit), misses=int(not hit), cache_ms=0.6,
                                  status=status))  # fmt: skip

        # GET /authors: one slow query.
        trace3, root3 = hexid(rng, 32), hexid(rng, 16)
        start3 = start_dt + dt.timedelta(seconds=60)
        slow = 180 + 40 * rng.random()
        spans.append(_span(trace3, root3, "", "GET /authors", ns(start3), slow + 3, service, "Server",
                           {"http.route": slow_route}))  # fmt: skip
        spans.append(_span(trace3, hexid(rng, 16), root3, "SELECT shop", ns(start3) + MS, slow, service, "Client",
                           {"db.system": "postgresql", "db.statement": "SELECT * FROM authors ORDER BY lower(name)"}))  # fmt: skip
        summaries.append(_summary(trace3, service, slow_route, start3, slow + 3, db=1, db_ms=slow))
    insert_span_rows(con, spans)
    summary_columns = (
        "trace_id, service, endpoint, http_method, http_status_code, start, duration_ns, is_error, span_count, "
        "db_count, db_ns, cache_count, cache_hits, cache_misses, cache_ns, http_count, http_ns, template_ns, self_ns"
    )
    con.executemany(
        f"INSERT INTO trace_summaries ({summary_columns}) VALUES ({', '.join(['?'] * 19)})", summaries
    )

    def add_finding(kind, severity, endpoint, title, evidence, fix, occ, loc):
        fingerprint = hashlib.sha256(f"{kind}|{service}|{endpoint}|{title}".encode()).hexdigest()
        fid = fingerprint[:16]
        con.execute(
            "INSERT INTO findings (id, fingerprint, kind, severity, service, endpoint, title, occurrences, "
            "first_seen, last_seen, impact_ms, evidence, example_trace_ids, code_filepath, code_lineno, "
            "code_function, fix_hint, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
            [fid, fingerprint, kind, severity, service, endpoint, title, len(occ), min(o[1] for o in occ),
             max(o[1] for o in occ), sum(o[2] for o in occ), json.dumps(evidence), [o[0] for o in occ[-3:]],
             *loc, fix],
        )  # fmt: skip
        con.executemany(
            "INSERT INTO finding_occurrences (finding_id, trace_id, timestamp, impact_ms, span_count, duration_ms, "
            "span_ids) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(fid, *o[:-1], [int(sid, 16) for sid in o[-1]]) for o in occ],  # span ids stored as UBIGINT
        )
        return fid

    n1_id = add_finding(
        "n_plus_one_query", "high", "/books",
        EVIL if evil else "N+1 query: Book.author loaded one by one (10 queries per request)",
        {"statement": sql_author, "queries_per_request": 10, "mean_query_ms": 1.9, "relationship": "Book.author",
         "example_url": EVIL_URL if evil else "https://example.org/books"},
        EVIL if evil else "Load the authors with the books: select(Book).options(selectinload(Book.author)).",
        occurrences, ("shop/views.py", 57, EVIL if evil else "list_books"),
    )  # fmt: skip
    slow_occ = [(s[0], s[5], s[6] / MS - 100, 1, s[6] / MS, []) for s in summaries if s[2] == slow_route]
    slow_id = add_finding(
        "slow_query", "medium", slow_route, "Slow query: SELECT * FROM authors ORDER BY lower(name)",
        {"statement": "SELECT * FROM authors ORDER BY lower(name)", "p95_ms": 215.0, "threshold_ms": 100},
        "Add an index on lower(name) or paginate the author list.", slow_occ, ("shop/authors.py", 12, "authors"),
    )  # fmt: skip
    con.execute("CHECKPOINT")
    return {
        "n1_id": n1_id,
        "slow_id": slow_id,
        "n1_trace": n1_traces[-1],
        "n1_span_ids": n1_span_ids[n1_traces[-1]],
        "books_trace": n1_traces[0],
        "service": service,
        "slow_route": slow_route,
    }
