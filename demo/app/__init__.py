"""The demo bookshop: a Flask + Flask-SQLAlchemy + Flask-Caching app with planted performance problems.

Every planted problem has a clean twin that does the same work the right way; ``PLANTED`` and
``TWINS`` below list them (route, expected finding kind, the function holding the problem). Source
lines carrying a problem end with a ``# planted: KIND`` comment, so tests can find the line.

Configuration (arguments of :func:`create_app`, or environment variables):

* ``TRACEHOUND_DEMO_DATABASE_URL``: SQLAlchemy URL; default a SQLite file ``bookshop.sqlite`` in
  ``TRACEHOUND_DEMO_DATA_DIR`` (default: the current directory).
* ``TRACEHOUND_DEMO_REDIS_URL``: use Redis for Flask-Caching; default ``SimpleCache`` (in process).
* ``TRACEHOUND_DEMO_STUB_URL``: base URL of the shipping-rates stub (:mod:`tracehound.demo.app.stub`).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from .api import api
from .extensions import cache
from .models import db
from .pages import pages

#: Planted problems: route -> (finding kind, view function holding the problem).
PLANTED = {
    "/books": ("n_plus_one_query", "book_list"),
    "/authors": ("n_plus_one_query", "_shelves"),
    "/api/prices": ("n_plus_one_cache", "price_list"),
    "/cart/<int:order_id>": ("repeated_query", "cart"),
    "/tags/<name>/popular": ("slow_query", "tag_popular"),
    "/api/recommendations": ("cache_miss_ratio", "recommendations"),
    "/api/shipping/quote": ("consecutive_http", "shipping_quote"),
    "/api/inventory/report": ("connection_churn", "inventory_report"),
}

#: The clean twin of each planted route (same work done right: must produce no finding at all).
TWINS = {
    "/books": "/books/eager",
    "/authors": "/authors/eager",
    "/api/prices": "/api/prices/bulk",
    "/cart/<int:order_id>": "/cart/<int:order_id>/hoisted",
    "/tags/<name>/popular": "/tags/<name>/popular/indexed",
    "/api/recommendations": "/api/bestsellers",
    "/api/shipping/quote": "/api/shipping/quote/concurrent",
    "/api/inventory/report": "/api/inventory",
}


def create_app(
    database_url: str | None = None,
    redis_url: str | None = None,
    stub_url: str | None = None,
    seed_data: bool = True,
    config: dict | None = None,
) -> Flask:
    """Build the bookshop app; creates the tables and seeds them (see :mod:`.seed`) when empty.

    ``None`` arguments fall back to the environment variables in the module docstring; ``config``
    overrides Flask config keys last (e.g. ``{"CACHE_KEY_PREFIX": "test:"}``).
    """
    app = Flask(__name__)
    if database_url is None:
        database_url = os.environ.get("TRACEHOUND_DEMO_DATABASE_URL")
    if not database_url:
        data_dir = Path(os.environ.get("TRACEHOUND_DEMO_DATA_DIR", "."))
        database_url = f"sqlite:///{(data_dir / 'bookshop.sqlite').resolve()}"
    redis_url = redis_url or os.environ.get("TRACEHOUND_DEMO_REDIS_URL") or None
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10} if not database_url.startswith("sqlite") else {},
        STUB_URL=(stub_url or os.environ.get("TRACEHOUND_DEMO_STUB_URL", "http://127.0.0.1:8099")).rstrip(
            "/"
        ),
        CACHE_DEFAULT_TIMEOUT=300,
    )
    if redis_url:
        app.config.update(CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, CACHE_KEY_PREFIX="bookshop:")
    else:
        app.config.update(CACHE_TYPE="SimpleCache", CACHE_THRESHOLD=100_000)
    app.config.update(config or {})
    db.init_app(app)
    cache.init_app(app)
    app.register_blueprint(pages)
    app.register_blueprint(api)
    if seed_data:
        with app.app_context():
            from .seed import seed

            db.create_all()
            seed()
    return app


def planted_locations() -> dict[str, list[tuple[str, int, str]]]:
    """Where the planted problems sit: ``{kind: [(file path, line number, function name), ...]}``.

    Read from the ``# planted: KIND`` comments in this package's modules; the function is the
    innermost ``def`` around the line (what a span's ``code.function`` names).
    """
    import ast
    import re

    marker = re.compile(r"#\s*planted:\s*([a-z_]+)\s*$")
    found: dict[str, list[tuple[str, int, str]]] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        source = path.read_text()
        functions = [
            node
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for lineno, line in enumerate(source.splitlines(), 1):
            match = marker.search(line)
            if not match:
                continue
            around = [f for f in functions if f.lineno <= lineno <= f.end_lineno]
            name = min(around, key=lambda f: f.end_lineno - f.lineno).name if around else ""
            found.setdefault(match.group(1), []).append((str(path), lineno, name))
    return found
