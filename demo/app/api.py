"""JSON API of the bookshop. Lines marked ``# planted: KIND`` hold planted problems."""

from __future__ import annotations

import contextvars
import random
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Blueprint, abort, current_app, jsonify, request
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import joinedload, selectinload

from .extensions import PAGE_SIZE, book_card, cache
from .models import Author, Book, Order, OrderItem, db

api = Blueprint("api", __name__, url_prefix="/api")
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="carrier-rates")

#: Inventory figures (books nearly out of stock, copies in stock).
LOW_STOCK = select(func.count(Book.id)).where(Book.stock < 3)
TOTAL_STOCK = select(func.sum(Book.stock))
#: Carriers asked for a live shipping rate.
CARRIERS = ("parcelpost", "swiftship", "bookmail", "euroexpress", "cargoline")


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


def _live_rate(base_url: str, carrier: str, weight_g: int) -> dict:
    url = f"{base_url}/v1/carriers/{carrier}/rates"
    response = requests.get(url, params={"weight_g": weight_g}, timeout=10)
    response.raise_for_status()
    return response.json()


@api.get("/shipping/quote")
def shipping_quote():
    """PLANTED consecutive_http: asks each carrier's live rate API (~0.55 s) one after another."""
    weight_g = request.args.get("weight_g", 800, type=int)
    base_url = current_app.config["STUB_URL"]
    quotes = []
    for carrier in CARRIERS:
        url = f"{base_url}/v1/carriers/{carrier}/rates"
        response = requests.get(url, params={"weight_g": weight_g}, timeout=10)  # planted: consecutive_http
        response.raise_for_status()
        quotes.append(response.json())
    return jsonify(weight_g=weight_g, best=min(quotes, key=lambda q: q["price"]), quotes=quotes)


@api.get("/shipping/quote/concurrent")
def shipping_quote_concurrent():
    """Clean twin of :func:`shipping_quote`: the same calls, concurrently (one call's latency).

    Each call runs in a copy of the request's context, so its client span stays in this trace.
    """
    weight_g = request.args.get("weight_g", 800, type=int)
    base_url = current_app.config["STUB_URL"]
    futures = [
        _POOL.submit(contextvars.copy_context().run, _live_rate, base_url, carrier, weight_g)
        for carrier in CARRIERS
    ]
    quotes = [f.result() for f in futures]
    return jsonify(weight_g=weight_g, best=min(quotes, key=lambda q: q["price"]), quotes=quotes)


@api.get("/inventory/report")
def inventory_report():
    """PLANTED connection_churn: builds a new engine (and pool, and connection) per request."""
    engine = create_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])  # planted: connection_churn
    try:
        with engine.connect() as conn:  # planted: connection_churn
            low, total = conn.execute(LOW_STOCK).scalar(), conn.execute(TOTAL_STOCK).scalar()
    finally:
        engine.dispose()
    return jsonify(low_stock=low, total_stock=int(total or 0))


@api.get("/inventory")
def inventory():
    """Clean twin of :func:`inventory_report`: the app's shared, pooled engine."""
    low = db.session.execute(LOW_STOCK).scalar()
    total = db.session.execute(TOTAL_STOCK).scalar()
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
