"""HTML pages of the bookshop (Jinja2). Lines marked ``# planted: KIND`` hold planted problems."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, abort, render_template, request
from sqlalchemy import desc, func, select
from sqlalchemy.orm import joinedload, selectinload

from .extensions import PAGE_SIZE, book_card, cache
from .models import Author, Book, Order, OrderItem, Review, Setting, Tag, book_tags, db

pages = Blueprint("pages", __name__)

#: Authors per /authors page: 25 lazy ``Author.books`` loads, then ~120 lazy ``Book.reviews`` loads.
AUTHORS_PER_PAGE = 25


@pages.get("/")
def home():
    """Front page: the newest books, cached for ten minutes under one key (high hit ratio)."""
    featured = cache.get("home:featured")
    if featured is None:
        stmt = select(Book).options(joinedload(Book.author)).order_by(Book.published_year.desc()).limit(12)
        featured = [book_card(b, b.author.name) for b in db.session.scalars(stmt)]
        cache.set("home:featured", featured, timeout=600)
    return render_template("home.html", books=featured)


def _page() -> int:
    return max(1, request.args.get("page", 1, type=int))


@pages.get("/books")
def book_list():
    """PLANTED n_plus_one_query: one lazy ``Book.author`` load per book on the page."""
    stmt = select(Book).order_by(Book.id).limit(PAGE_SIZE).offset((_page() - 1) * PAGE_SIZE)
    rows = []
    for book in db.session.scalars(stmt):
        rows.append(book_card(book, book.author.name))  # planted: n_plus_one_query
    return render_template("books.html", rows=rows, page=_page(), title="Books")


@pages.get("/books/eager")
def book_list_eager():
    """Clean twin of :func:`book_list`: ``joinedload(Book.author)``, one query."""
    stmt = (
        select(Book)
        .options(joinedload(Book.author))
        .order_by(Book.id)
        .limit(PAGE_SIZE)
        .offset((_page() - 1) * PAGE_SIZE)
    )
    rows = [book_card(book, book.author.name) for book in db.session.scalars(stmt)]
    return render_template("books.html", rows=rows, page=_page(), title="Books (eager)")


@pages.get("/books/<int:book_id>")
def book_detail(book_id: int):
    """One book with its author, tags and latest ten reviews (eager, three queries)."""
    book = db.first_or_404(
        select(Book).where(Book.id == book_id).options(joinedload(Book.author), selectinload(Book.tags))
    )
    reviews = db.session.scalars(
        select(Review).where(Review.book_id == book_id).order_by(Review.id.desc()).limit(10)
    ).all()
    return render_template("book.html", book=book, reviews=reviews)


def _shelves(authors) -> list[dict]:
    """Per author: books with review count and mean rating (touches ``books`` and ``reviews``)."""
    shelves = []
    for author in authors:
        books = []
        for book in author.books:  # planted: n_plus_one_query
            ratings = []
            for review in book.reviews:  # planted: n_plus_one_query
                ratings.append(review.rating)
            mean = round(sum(ratings) / len(ratings), 1) if ratings else None
            books.append({"id": book.id, "title": book.title, "reviews": len(ratings), "rating": mean})
        shelves.append({"id": author.id, "name": author.name, "country": author.country, "books": books})
    return shelves


@pages.get("/authors")
def author_list():
    """PLANTED nested n_plus_one_query: lazy ``Author.books``, and inside it lazy ``Book.reviews``."""
    stmt = select(Author).order_by(Author.id).limit(AUTHORS_PER_PAGE).offset((_page() - 1) * AUTHORS_PER_PAGE)
    shelves = _shelves(db.session.scalars(stmt).all())
    return render_template("authors.html", shelves=shelves, page=_page(), title="Authors")


@pages.get("/authors/eager")
def author_list_eager():
    """Clean twin of :func:`author_list`: ``selectinload(Author.books)`` plus one aggregate query.

    The review counts and mean ratings come from one ``GROUP BY`` over ``reviews`` instead of
    loading every review object: three queries in all, whatever the page holds.
    """
    stmt = (
        select(Author)
        .options(selectinload(Author.books))
        .order_by(Author.id)
        .limit(AUTHORS_PER_PAGE)
        .offset((_page() - 1) * AUTHORS_PER_PAGE)
    )
    authors = db.session.scalars(stmt).all()
    book_ids = [book.id for author in authors for book in author.books]
    stats = {
        book_id: (count, mean)
        for book_id, count, mean in db.session.execute(
            select(Review.book_id, func.count(), func.avg(Review.rating))
            .where(Review.book_id.in_(book_ids))
            .group_by(Review.book_id)
        )
    }
    shelves = []
    for author in authors:
        books = []
        for book in author.books:
            count, mean = stats.get(book.id, (0, None))
            rating = round(float(mean), 1) if mean is not None else None
            books.append({"id": book.id, "title": book.title, "reviews": count, "rating": rating})
        shelves.append({"id": author.id, "name": author.name, "country": author.country, "books": books})
    return render_template("authors.html", shelves=shelves, page=_page(), title="Authors (eager)")


@pages.get("/authors/<int:author_id>")
def author_detail(author_id: int):
    """One author and their books (``selectinload``)."""
    author = db.first_or_404(select(Author).where(Author.id == author_id).options(selectinload(Author.books)))
    return render_template("author.html", author=author)


@pages.get("/tags")
def tag_list():
    """Every tag with its number of books (one GROUP BY)."""
    stmt = (
        select(Tag.name, func.count(book_tags.c.book_id))
        .join(book_tags, book_tags.c.tag_id == Tag.id)
        .group_by(Tag.id)
        .order_by(Tag.name)
    )
    return render_template("tags.html", tags=db.session.execute(stmt).all())


def _books_tagged(name: str) -> list[dict]:
    stmt = (
        select(Book)
        .join(Book.tags)
        .where(Tag.name == name)
        .options(joinedload(Book.author))
        .order_by(Book.id)
        .limit(PAGE_SIZE)
    )
    return [book_card(b, b.author.name) for b in db.session.scalars(stmt)]


@pages.get("/tags/<name>")
def tag_detail(name: str):
    """Books carrying a tag (indexed join, author eager-loaded)."""
    return render_template("books.html", rows=_books_tagged(name), page=1, title=f"Tag: {name}")


@pages.get("/search")
def search():
    """Books whose title contains the term (``LIKE`` over the 1,200 titles: a few ms)."""
    q = request.args.get("q", "").strip()
    if not q:
        abort(400, "give a search term: /search?q=word")
    stmt = select(Book.id, Book.title).where(Book.title.ilike(f"%{q}%")).order_by(Book.id).limit(PAGE_SIZE)
    return render_template("search.html", q=q, hits=db.session.execute(stmt).all())


@pages.get("/search/tags")
def search_tags():
    """Books carrying the tag named by the term (indexed ``tags.name``)."""
    q = request.args.get("q", "").strip().lower()
    if not q:
        abort(400, "give a search term: /search/tags?q=history")
    hits = [(b["id"], b["title"]) for b in _books_tagged(q)]
    return render_template("search.html", q=q, hits=hits)


def _most_reviewed(tag: str, review_key, book_key):
    """The tag's 20 most-reviewed books: ``(id, title, reviews, readers, rating)`` rows.

    Most reviews first. The review count, the number of distinct readers and the mean rating are
    correlated scalar subqueries ``FROM reviews WHERE
    review_key = book_key``, each run once per book of the tag (~120): with an index on
    ``review_key`` each run is an index lookup; without one each run reads all ~41,000 reviews.
    """
    reviews = select(func.count()).where(review_key == book_key).correlate(Book).scalar_subquery()
    readers = (
        select(func.count(Review.reviewer.distinct()))
        .where(review_key == book_key)
        .correlate(Book)
        .scalar_subquery()
    )
    rating = select(func.avg(Review.rating)).where(review_key == book_key).correlate(Book).scalar_subquery()
    return (
        select(
            Book.id, Book.title, reviews.label("reviews"), readers.label("readers"), rating.label("rating")
        )
        .join(book_tags, book_tags.c.book_id == Book.id)
        .join(Tag, Tag.id == book_tags.c.tag_id)
        .where(Tag.name == tag)
        .order_by(desc("reviews"), Book.id)
        .limit(20)
    )


@pages.get("/tags/<name>/popular")
def tag_popular(name: str):
    """PLANTED slow_query (missing index): ranks the tag's books by review count, counting reviews
    by ``reviews.book_isbn`` (the partner feed's key), which has no index: each of the ~120 books
    scans every review three times (count, readers, mean rating), seconds on SQLite. Fix: ``CREATE INDEX ON reviews (book_isbn)``."""
    stmt = _most_reviewed(name, Review.book_isbn, Book.isbn)
    rows = db.session.execute(stmt).all()  # planted: slow_query
    return render_template("popular.html", tag=name, rows=rows)


@pages.get("/tags/<name>/popular/indexed")
def tag_popular_indexed(name: str):
    """Clean twin of :func:`tag_popular`: the same statement keyed on the indexed ``reviews.book_id``."""
    stmt = _most_reviewed(name, Review.book_id, Book.id)
    rows = db.session.execute(stmt).all()
    return render_template("popular.html", tag=name, rows=rows)


def _load_order(order_id: int) -> Order:
    stmt = (
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.items).joinedload(OrderItem.book))
    )
    return db.first_or_404(stmt)


VAT_RATE = select(Setting.value).where(Setting.key == "vat_rate")


def _line(item: OrderItem, vat_rate: Decimal) -> dict:
    net = Decimal(item.price_cents * item.quantity) / 100
    return {"title": item.book.title, "quantity": item.quantity, "net": net, "vat": round(net * vat_rate, 2)}


@pages.get("/cart/<int:order_id>")
def cart(order_id: int):
    """PLANTED repeated_query: the VAT rate is read again, identically, for every line."""
    order = _load_order(order_id)
    lines = []
    for item in order.items:
        vat_text = db.session.scalar(VAT_RATE)  # planted: repeated_query
        lines.append(_line(item, Decimal(vat_text)))
    return render_template("cart.html", order=order, lines=lines)


@pages.get("/cart/<int:order_id>/hoisted")
def cart_hoisted(order_id: int):
    """Clean twin of :func:`cart`: the VAT rate is read once, before the loop."""
    order = _load_order(order_id)
    vat_rate = Decimal(db.session.scalar(VAT_RATE))
    lines = [_line(item, vat_rate) for item in order.items]
    return render_template("cart.html", order=order, lines=lines)


@pages.get("/orders/<int:order_id>")
def order_detail(order_id: int):
    """An order with its lines and books (eager)."""
    order = _load_order(order_id)
    return render_template("order.html", order=order)
