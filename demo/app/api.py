"""JSON API of the bookshop. Lines marked ``# planted: KIND`` hold planted problems."""

from __future__ import annotations

import random

import requests
from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import joinedload, selectinload

from .extensions import PAGE_SIZE, book_card, cache
from .models import Author, Book, Order, OrderItem, db

api = Blueprint("api", __name__, url_prefix="/api")

#: Inventory figures, as SQL that runs the same on SQLite, PostgreSQL and MariaDB.
LOW_STOCK_SQL = text("SELECT count(*) FROM books WHERE stock < 3")
TOTAL_STOCK_SQL = text("SELECT sum(stock) FROM books")


def _page() -> int:
    return max(1, request.args.get("page", 1, type=int))


@api.get("/books")
def api_books():
    """A page of books, ``{"page": n, "books": [book_card...]}`` (author eager-loaded)."""
    stmt = (
        select(Book)
        .options(joinedload(Book.author))
        .order_by(Book.id)
        .limit(PAGE_SIZE)
        .offset((_page() - 1) * PAGE_SIZE)
    )
    return jsonify(page=_page(), books=[book_card(b, b.author.name) for b in db.session.scalars(stmt)])


@api.get("/books/<int:book_id>")
def api_book(book_id: int):
    """One book with its tags; 404 when unknown."""
    book = db.first_or_404(
        select(Book).where(Book.id == book_id).options(joinedload(Book.author), selectinload(Book.tags))
    )
    return jsonify(**book_card(book, book.author.name), tags=[t.name for t in book.tags], stock=book.stock)


@api.get("/authors")
def api_authors():
    """Authors with their number of books (one GROUP BY)."""
    stmt = (
        select(Author.id, Author.name, func.count(Book.id))
        .join(Book, Book.author_id == Author.id)
        .group_by(Author.id, Author.name)
        .order_by(Author.id)
        .limit(PAGE_SIZE)
        .offset((_page() - 1) * PAGE_SIZE)
    )
    return jsonify(authors=[{"id": i, "name": n, "books": c} for i, n, c in db.session.execute(stmt)])


def _price_page() -> list[tuple[int, int]]:
    stmt = select(Book.id, Book.price_cents).order_by(Book.id).limit(30).offset((_page() - 1) * 30)
    return [(book_id, cents) for book_id, cents in db.session.execute(stmt)]


def _sale_price(cents: int) -> float:
    return round(cents * 0.9 / 100, 2)


@api.get("/prices")
def price_list():
    """PLANTED n_plus_one_cache: one ``cache.get`` per book (30 round trips to the cache)."""
    prices = {}
    for book_id, cents in _price_page():
        price = cache.get(f"price:{book_id}")  # planted: n_plus_one_cache
        if price is None:
            price = _sale_price(cents)
            cache.set(f"price:{book_id}", price, timeout=3600)
        prices[book_id] = price
    return jsonify(page=_page(), prices=prices)


@api.get("/prices/bulk")
def price_list_bulk():
    """Clean twin of :func:`price_list`: one ``cache.get_many``, one ``set_many`` for the misses."""
    rows = _price_page()
    cached = cache.get_many(*[f"price:{book_id}" for book_id, _ in rows])
    prices, missing = {}, {}
    for (book_id, cents), price in zip(rows, cached, strict=True):
        if price is None:
            price = missing[f"price:{book_id}"] = _sale_price(cents)
        prices[book_id] = price
    if missing:
        cache.set_many(missing, timeout=3600)
    return jsonify(page=_page(), prices=prices)


def _recommend(seed: int) -> list[dict]:
    stmt = (
        select(Book)
        .options(joinedload(Book.author))
        .where(Book.id % 97 == seed % 97)
        .order_by(Book.published_year.desc())
        .limit(8)
    )
    return [book_card(b, b.author.name) for b in db.session.scalars(stmt)]


@api.get("/recommendations")
def recommendations():
    """PLANTED cache_miss_ratio: cached per user for 5 s over ~100,000 users: nearly every get misses."""
    user = request.args.get("user", type=int) or random.randint(1, 100_000)
    recs = cache.get(f"recs:user:{user}")  # planted: cache_miss_ratio
    if recs is None:
        recs = _recommend(user)
        cache.set(f"recs:user:{user}", recs, timeout=5)
    return jsonify(user=user, books=recs)


@api.get("/bestsellers")
def bestsellers():
    """Clean twin of :func:`recommendations`: one shared key kept 5 minutes (hit ratio near 1)."""
    books = cache.get("bestsellers")
    if books is None:
        books = _recommend(7)
        cache.set("bestsellers", books, timeout=300)
    return jsonify(books=books)


@api.get("/shipping/quote")
def shipping_quote():
    """PLANTED slow outbound HTTP: asks the carrier's live rate API (~400 ms) inside the request."""
    weight_g = request.args.get("weight_g", 800, type=int)
    url = f"{current_app.config['STUB_URL']}/v1/rates/live"
    response = requests.get(url, params={"weight_g": weight_g}, timeout=10)  # planted: slow_span
    response.raise_for_status()
    return jsonify(weight_g=weight_g, **response.json())


@api.get("/shipping/quote/cached")
def shipping_quote_cached():
    """Clean twin of :func:`shipping_quote`: reads the carrier's published rate table (fast)."""
    weight_g = request.args.get("weight_g", 800, type=int)
    url = f"{current_app.config['STUB_URL']}/v1/rates/table"
    response = requests.get(url, params={"weight_g": weight_g}, timeout=10)
    response.raise_for_status()
    return jsonify(weight_g=weight_g, **response.json())


@api.get("/inventory/report")
def inventory_report():
    """PLANTED connection_churn: builds a new engine (and pool, and connection) per request."""
    engine = create_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])  # planted: connection_churn
    try:
        with engine.connect() as conn:  # planted: connection_churn
            low, total = conn.execute(LOW_STOCK_SQL).scalar(), conn.execute(TOTAL_STOCK_SQL).scalar()
    finally:
        engine.dispose()
    return jsonify(low_stock=low, total_stock=int(total or 0))


@api.get("/inventory")
def inventory():
    """Clean twin of :func:`inventory_report`: the app's shared, pooled engine."""
    low = db.session.execute(LOW_STOCK_SQL).scalar()
    total = db.session.execute(TOTAL_STOCK_SQL).scalar()
    return jsonify(low_stock=low, total_stock=int(total or 0))


@api.post("/orders")
def create_order():
    """Create a paid order from ``{"email": str, "items": [{"book_id": int, "quantity": int}]}``.

    Answers 201 with the order, or 400 naming what is wrong with the body.
    """
    body = request.get_json(silent=True) or {}
    items = body.get("items") or []
    if not body.get("email") or not items:
        abort(400, "send JSON {'email': ..., 'items': [{'book_id': 1, 'quantity': 1}]}")
    try:
        wanted = {int(i["book_id"]): max(1, int(i.get("quantity", 1))) for i in items}
    except (KeyError, TypeError, ValueError):
        abort(400, "every item needs an integer book_id and quantity")
    books = db.session.scalars(select(Book).where(Book.id.in_(wanted))).all()
    if len(books) != len(wanted):
        abort(400, "unknown book_id in items")
    order = Order(customer_email=str(body["email"]), status="paid")
    order.items = [OrderItem(book=b, quantity=wanted[b.id], price_cents=b.price_cents) for b in books]
    db.session.add(order)
    db.session.commit()
    return jsonify(id=order.id, lines=len(order.items)), 201


@api.get("/orders/<int:order_id>")
def api_order(order_id: int):
    """An order with its lines (eager), amounts in euros."""
    order = db.first_or_404(
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.items).joinedload(OrderItem.book))
    )
    lines = [
        {"book_id": i.book_id, "title": i.book.title, "quantity": i.quantity, "price": i.price_cents / 100}
        for i in order.items
    ]
    return jsonify(id=order.id, status=order.status, email=order.customer_email, lines=lines)


@api.get("/health")
def health():
    """Liveness: ``{"status": "ok"}`` without touching the database."""
    return jsonify(status="ok")
