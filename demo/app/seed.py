"""Seed the bookshop with deterministic data, fast (bulk ``INSERT ... VALUES`` batches).

Sizes (defaults): 250 authors, 1,200 books, 30 tags, ~41,000 reviews of ~500 characters (~20 MB,
which the planted slow query scans once per book of a tag through the unindexed
``reviews.book_isbn``), 400 orders. The same seed always gives the same
rows, so tests can rely on ids (order 1 is a cart of 8 lines).
"""

from __future__ import annotations

import random

from sqlalchemy import func, insert, select, text

from .models import Author, Book, Order, OrderItem, Review, Setting, Tag, book_tags, db

WORDS = [
    "river",
    "night",
    "garden",
    "winter",
    "letter",
    "empire",
    "silver",
    "quiet",
    "machine",
    "ocean",
    "memory",
    "shadow",
    "harbor",
    "journey",
    "kingdom",
    "forest",
    "mirror",
    "engine",
    "promise",
    "stranger",
    "castle",
    "summer",
    "thunder",
    "library",
    "paper",
    "island",
    "circus",
    "signal",
    "orchard",
    "lantern",
    "compass",
    "voyage",
    "frontier",
    "whisper",
    "meadow",
    "glacier",
    "bridge",
    "archive",
    "festival",
    "carnival",
    "horizon",
    "treaty",
    "desert",
    "canyon",
    "harvest",
    "lighthouse",
    "monastery",
    "harbor",
    "violin",
    "clockwork",
    "atlas",
    "cipher",
    "dynasty",
    "pilgrim",
    "tempest",
    "falcon",
    "ember",
    "velvet",
    "marble",
    "copper",
]
ADJECTIVES = [
    "gripping",
    "slow",
    "moving",
    "tender",
    "brutal",
    "witty",
    "dense",
    "lyrical",
    "uneven",
    "brilliant",
    "haunting",
    "dry",
]
FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dan",
    "Eva",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Mona",
    "Nils",
    "Olga",
    "Pau",
    "Rosa",
    "Sven",
    "Tove",
    "Yuki",
]
LAST = [
    "Almeida",
    "Brandt",
    "Costa",
    "Dubois",
    "Eriksen",
    "Ferrari",
    "Garcia",
    "Haas",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
]
COUNTRIES = [
    "Portugal",
    "France",
    "Norway",
    "Italy",
    "Spain",
    "Germany",
    "Poland",
    "Denmark",
    "Japan",
    "Chile",
]
TAGS = [
    "fiction",
    "history",
    "science",
    "poetry",
    "travel",
    "mystery",
    "romance",
    "fantasy",
    "biography",
    "cooking",
    "art",
    "music",
    "philosophy",
    "economics",
    "politics",
    "nature",
    "children",
    "classics",
    "horror",
    "thriller",
    "essays",
    "drama",
    "humor",
    "mathematics",
    "design",
    "film",
    "sports",
    "religion",
    "psychology",
    "technology",
]


def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 14))
    return f"A {rng.choice(ADJECTIVES)} book about the {' '.join(words)}."


def _isbn(book_id: int) -> str:
    return f"978{book_id:010d}"


def seed(books: int = 1200, authors: int = 250, reviews_per_book: int = 35, orders: int = 400) -> dict:
    """Fill an empty database (call inside an app context); return the row counts per table.

    Does nothing but count when ``books`` already has rows. ``reviews_per_book`` is the mean.
    """
    if db.session.scalar(select(func.count()).select_from(Book)):
        return counts()
    if db.engine.dialect.name == "sqlite":
        # Write-ahead log: readers and the order-writing requests never block each other (in the
        # default rollback journal a commit waits for the slow search and stalls every reader).
        db.session.execute(text("PRAGMA journal_mode=WAL"))
    rng = random.Random(42)
    sentences = [_sentence(rng) for _ in range(3000)]
    db.session.execute(
        insert(Author),
        [
            {
                "id": i,
                "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "country": rng.choice(COUNTRIES),
                "bio": " ".join(rng.sample(sentences, 3)),
            }
            for i in range(1, authors + 1)
        ],
    )
    db.session.execute(insert(Tag), [{"id": i, "name": name} for i, name in enumerate(TAGS, 1)])
    db.session.execute(
        insert(Book),
        [
            {
                "id": i,
                "isbn": _isbn(i),
                "title": f"The {rng.choice(WORDS).title()} of the {rng.choice(WORDS).title()} {i}",
                "author_id": rng.randint(1, authors),
                "price_cents": rng.randint(499, 4999),
                "published_year": rng.randint(1900, 2025),
                "stock": rng.randint(0, 40),
                "description": " ".join(rng.sample(sentences, 4)),
            }
            for i in range(1, books + 1)
        ],
    )
    db.session.execute(
        insert(book_tags),
        [
            {"book_id": b, "tag_id": t}
            for b in range(1, books + 1)
            for t in rng.sample(range(1, len(TAGS) + 1), 3)
        ],
    )
    review_rows = []
    for b in range(1, books + 1):
        for _ in range(rng.randint(reviews_per_book // 2, reviews_per_book * 3 // 2)):
            review_rows.append(
                {
                    "book_id": b,
                    "book_isbn": _isbn(b),
                    "reviewer": rng.choice(FIRST),
                    "rating": rng.randint(1, 5),
                    "body": " ".join(rng.sample(sentences, 6)),
                }
            )
    for start in range(0, len(review_rows), 5000):
        db.session.execute(insert(Review), review_rows[start : start + 5000])
    db.session.execute(
        insert(Order),
        [
            {"id": i, "customer_email": f"reader{i}@example.org", "status": "cart" if i <= 50 else "paid"}
            for i in range(1, orders + 1)
        ],
    )
    db.session.execute(
        insert(OrderItem),
        [
            {
                "order_id": o,
                "book_id": rng.randint(1, books),
                "quantity": rng.randint(1, 3),
                "price_cents": rng.randint(499, 4999),
            }
            for o in range(1, orders + 1)
            for _ in range(8 if o <= 50 else rng.randint(1, 5))
        ],
    )
    db.session.execute(
        insert(Setting),
        [
            {"key": "vat_rate", "value": "0.06"},
            {"key": "shipping_fee_cents", "value": "399"},
            {"key": "free_shipping_from_cents", "value": "5000"},
        ],
    )
    db.session.commit()
    return counts()


def counts() -> dict:
    """Row counts per table, e.g. ``{"books": 1200, ...}``."""
    models = {"authors": Author, "books": Book, "reviews": Review, "tags": Tag, "orders": Order}
    return {name: db.session.scalar(select(func.count()).select_from(m)) for name, m in models.items()}
