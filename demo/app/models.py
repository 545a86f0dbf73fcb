"""The bookshop's SQLAlchemy models (Flask-SQLAlchemy).

Relationships keep SQLAlchemy's default ``lazy="select"`` loading on purpose: the planted N+1
routes rely on it, and their clean twins opt into ``selectinload``/``joinedload`` per query.
"""

from __future__ import annotations

import datetime as dt

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Column, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

book_tags = Table(
    "book_tags",
    Base.metadata,
    Column("book_id", ForeignKey("books.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True, index=True),
)


class Author(db.Model):
    """A writer; ``books`` is a lazy collection."""

    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    country: Mapped[str] = mapped_column(String(60))
    bio: Mapped[str] = mapped_column(Text)
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(db.Model):
    """A title in the catalogue; ``isbn`` is indexed (unique), ``author`` a lazy many-to-one."""

    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    isbn: Mapped[str] = mapped_column(String(20), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    price_cents: Mapped[int] = mapped_column(Integer)
    published_year: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    author: Mapped[Author] = relationship(back_populates="books")
    reviews: Mapped[list[Review]] = relationship(back_populates="book", order_by="Review.id")
    tags: Mapped[list[Tag]] = relationship(secondary=book_tags, back_populates="books")


class Review(db.Model):
    """A reader's review. ``book_id`` is the indexed foreign key; ``book_isbn`` names the same book
    by ISBN, as the partner review feed delivers it, and deliberately has NO index (the planted
    slow query of ``/tags/<name>/popular`` joins on it)."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"), index=True)
    book_isbn: Mapped[str] = mapped_column(String(20))  # no index: planted missing index
    reviewer: Mapped[str] = mapped_column(String(80))
    rating: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    book: Mapped[Book] = relationship(back_populates="reviews")


class Tag(db.Model):
    """A subject tag; ``name`` is indexed (unique), the fast search path."""

    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True, index=True)
    books: Mapped[list[Book]] = relationship(secondary=book_tags, back_populates="tags")


class Order(db.Model):
    """A customer order; ``status`` is ``'cart'``, ``'paid'`` or ``'shipped'``."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_email: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=lambda: dt.datetime.now(dt.timezone.utc))
    items: Mapped[list[OrderItem]] = relationship(back_populates="order", order_by="OrderItem.id")


class OrderItem(db.Model):
    """One line of an order: a book, a quantity and the unit price paid (cents)."""

    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(Integer)
    order: Mapped[Order] = relationship(back_populates="items")
    book: Mapped[Book] = relationship()


class Setting(db.Model):
    """Shop-wide settings as key/value text (VAT rate, shipping fee...)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
