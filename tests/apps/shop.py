"""Test Flask app for the instrumentation tests (run under ``opentelemetry-instrument``).

Configuration (environment): ``SHOP_DB_URL`` (SQLAlchemy URL, default SQLite file in cwd),
``SHOP_CACHE_TYPE`` (Flask-Caching ``CACHE_TYPE``: SimpleCache, RedisCache, FileSystemCache),
``SHOP_CACHE_DIR`` (FileSystemCache dir), ``SHOP_REDIS_URL``, ``SHOP_PORT``, ``SHOP_RELOADER``,
``SHOP_OUTBOUND_URL`` (target of /outbound).
Lines the tests assert on carry a ``# MARK:<name>`` comment; tests find their line numbers.
"""

from __future__ import annotations

import os
import sqlite3

import httpx
import redis
import requests
from flask import Flask, jsonify
from flask_caching import Cache
from flask_sqlalchemy import SQLAlchemy
from opentelemetry import trace
from sqlalchemy import ForeignKey, String, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
cache = Cache()


SUFFIX = os.environ.get("SHOP_TABLE_SUFFIX", "")


class Author(db.Model):
    __tablename__ = f"th_author{SUFFIX}"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(db.Model):
    __tablename__ = f"th_book{SUFFIX}"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    author_id: Mapped[int] = mapped_column(ForeignKey(f"th_author{SUFFIX}.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def create_app() -> Flask:
    """Build the app; the set-up queries run inside a ``shop.startup`` span carrying the pid."""
    tracer = trace.get_tracer("shop")
    with tracer.start_as_current_span("shop.startup", attributes={"app.pid": os.getpid()}):
        return _create_app()


def _create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("SHOP_DB_URL", "sqlite:///shop.sqlite")
    app.config["CACHE_TYPE"] = os.environ.get("SHOP_CACHE_TYPE", "SimpleCache")
    app.config["CACHE_REDIS_URL"] = os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0")
    app.config["CACHE_DIR"] = os.environ.get("SHOP_CACHE_DIR", "cache-dir")
    app.config["CACHE_KEY_PREFIX"] = f"shop{os.getpid()}:"
    db.init_app(app)
    cache.init_app(app)
    with app.app_context():
        db.drop_all()
        db.create_all()
        for i in range(5):
            db.session.add(Book(title=f"Book {i}", author=Author(name=f"Author {i}")))
        db.session.commit()
        db.engine.dispose()  # no connection crosses a gunicorn --preload fork
    register(app)
    return app


@cache.memoize(timeout=60)
def book_title(book_id: int) -> str:
    return db.session.get(Book, book_id).title


def register(app: Flask) -> None:
    @app.route("/books")
    def books():
        rows = db.session.scalars(select(Book).order_by(Book.id)).all()  # MARK:books_query
        return jsonify([{"title": b.title, "author": b.author.name} for b in rows])  # MARK:lazy

    @app.route("/authors")
    def authors():
        people = db.session.scalars(select(Author).order_by(Author.id)).all()
        return jsonify({a.name: len(a.books) for a in people})  # MARK:authors_lazy

    @app.route("/authors/eager")
    def authors_eager():
        query = select(Author).options(selectinload(Author.books)).order_by(Author.id)
        people = db.session.scalars(query).all()  # MARK:authors_eager
        return jsonify({a.name: len(a.books) for a in people})

    @app.route("/books/<int:book_id>")
    def book(book_id: int):
        first = db.session.get(Book, book_id)
        db.session.expire_all()
        again = db.session.get(Book, book_id)  # MARK:repeat
        return jsonify({"title": first.title, "same": again.title})

    @app.route("/cache/<int:n>")
    def cache_ops(n: int):
        hit_before = cache.get(f"book:{n}")  # MARK:cache_get
        cache.set(f"book:{n}", f"title {n}")  # MARK:cache_set
        cache.add(f"book:{n}", "ignored")
        values = cache.get_many(f"book:{n}", f"book:{n + 1000}")  # MARK:cache_get_many
        cache.delete(f"book:{n}")  # MARK:cache_delete
        first = book_title(1)  # MARK:memoize
        second = book_title(1)
        return jsonify({"before": hit_before, "values": values, "memo": [first, second]})

    @app.route("/cached")  # MARK:cached_view
    @cache.cached(timeout=60)
    def cached_view():
        return jsonify({"n": db.session.scalar(select(Book.id).limit(1))})

    @app.route("/redis")
    def raw_redis():
        client = redis.Redis.from_url(app.config["CACHE_REDIS_URL"])
        key = f"raw:{os.getpid()}"
        client.set(key, b"12345")
        hit = client.get(key)  # MARK:redis_get
        miss = client.get(key + ":missing")
        both = client.mget(key, key + ":missing")
        client.delete(key)
        return jsonify({"hit": hit is not None, "miss": miss is None, "both": len(both)})

    @app.route("/raw")
    def raw_dbapi():
        conn = sqlite3.connect(":memory:")
        cursor = conn.cursor()
        values = [cursor.execute("SELECT ? + 1", (n,)).fetchone()[0] for n in (1, 2, 1)]  # MARK:raw
        conn.close()
        return jsonify(values)

    @app.route("/outbound")
    def outbound():
        url = os.environ["SHOP_OUTBOUND_URL"]
        first = requests.get(url, timeout=5)  # MARK:requests_get
        second = httpx.get(url, timeout=5)  # MARK:httpx_get
        return jsonify({"status": [first.status_code, second.status_code]})

    @app.route("/rename/<int:book_id>")
    def rename(book_id: int):
        db.session.execute(  # MARK:raw_update
            text(f"UPDATE {Book.__tablename__} SET title = title WHERE id = :id"), {"id": book_id}
        )
        db.session.commit()
        return jsonify({"renamed": book_id})

    @app.route("/churn")
    def churn():
        engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        with engine.connect() as conn:  # MARK:churn_connect
            n = conn.execute(select(Book.id).limit(1)).scalar()
        engine.dispose()
        return jsonify({"n": n})

    @app.route("/pooled")
    def pooled():
        with db.engine.connect() as conn:  # MARK:pooled_connect
            n = conn.execute(select(Book.id).limit(1)).scalar()
        return jsonify({"n": n})

    @app.route("/pid")
    def pid():
        trace.get_current_span().set_attribute("app.pid", os.getpid())
        return jsonify({"pid": os.getpid()})


app = create_app()

if __name__ == "__main__":
    app.run(
        host="127.0.0.1",
        port=int(os.environ.get("SHOP_PORT", "5000")),
        use_reloader=os.environ.get("SHOP_RELOADER") == "1",
    )
