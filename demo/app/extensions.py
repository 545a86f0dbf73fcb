"""Flask extensions shared by the blueprints, and small helpers used by several views."""

from __future__ import annotations

from flask_caching import Cache

cache = Cache()

PAGE_SIZE = 50


def book_card(book, author_name: str) -> dict:
    """The JSON/template shape of a book in a list: ``price`` in euros (float)."""
    return {
        "id": book.id,
        "isbn": book.isbn,
        "title": book.title,
        "author": author_name,
        "price": book.price_cents / 100,
        "year": book.published_year,
    }
