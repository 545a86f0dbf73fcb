"""The route catalogue of the benchmark generator: what each request type's trace looks like.

Each :class:`Route` is one request type (service + ``http.route``) built once, in Python, as a list
of span *slots* (start offset and duration relative to the request start, in ms, name, kind,
attributes shaped like tracehound's instrumentation emits them). ``gen_spans.py`` then stamps out
hundreds of thousands of traces from these slots in DuckDB SQL, varying ids, timing, parameters,
cache hits and errors per trace.

The planted problems and the findings tracehound is expected to produce for them are in
:data:`PLANTED`; routes not named there are clean and must not produce those kinds.
"""

from __future__ import annotations

from gen_model import Route

AUTHOR_Q = (
    "SELECT authors.id AS authors_id, authors.name AS authors_name FROM authors WHERE authors.id = %(pk_1)s"
)
BOOKS_Q = "SELECT books.id, books.title, books.author_id, books.price FROM books ORDER BY books.id LIMIT %(param_1)s"


def _books(weight, n):
    r = Route("shop", "GET", "/books", weight).prelude()
    r.db(BOOKS_Q, 2.5, ("shop/views/books.py", 41, "list_books"))
    for _ in range(n):
        r.db(AUTHOR_Q, 1.3, ("shop/templates_helpers.py", 18, "author_name"), lazy=("Book.author", False))
        r.work(0.1)
    r.page("books/list.html", 6.0)
    return r.finish()


def _home():
    r = Route("shop", "GET", "/", 10).prelude()
    r.cache("get", "home:featured", 0.4, ("shop/views/home.py", 12, "index"), hit_p=0.95)
    r.db(
        "SELECT books.id, books.title FROM books WHERE books.featured = %(featured_1)s LIMIT %(param_1)s",
        3.0,
        ("shop/views/home.py", 15, "index"),
    )
    r.page("index.html", 4.0)
    return r.finish()


def _book_detail():
    r = Route("shop", "GET", "/books/<int:book_id>", 10, error_p=0.004).prelude()
    r.cache("get", "book:{n}", 0.4, ("shop/views/books.py", 60, "book_detail"), hit_p=0.9)
    r.db(
        "SELECT books.id, books.title, books.author_id FROM books WHERE books.id = %(pk_1)s",
        1.8,
        ("shop/views/books.py", 63, "book_detail"),
    )
    # selectinload: ONE batched IN query -> must NOT be flagged as N+1
    r.db(
        "SELECT reviews.id, reviews.book_id, reviews.stars FROM reviews WHERE reviews.book_id IN "
        "(__[POSTCOMPILE_primary_keys])",
        2.2,
        ("shop/views/books.py", 63, "book_detail"),
    )
    r.db(
        "SELECT users.id, users.name FROM users WHERE users.id IN (__[POSTCOMPILE_primary_keys])",
        1.6,
        ("shop/views/books.py", 63, "book_detail"),
    )
    r.page("books/detail.html", 3.5)
    return r.finish()


def _author_nested():
    r = Route("shop", "GET", "/authors/<int:author_id>", 8).prelude()
    r.db(
        "SELECT authors.id, authors.name FROM authors WHERE authors.id = %(pk_1)s",
        1.2,
        ("shop/views/authors.py", 22, "author_detail"),
    )
    for _ in range(6):  # loop over the author's books (a collection) ...
        r.db(
            "SELECT reviews.id, reviews.stars, reviews.user_id FROM reviews WHERE %(param_1)s = reviews.book_id",
            9.0,
            ("shop/views/authors.py", 27, "author_detail"),
            lazy=("Book.reviews", True),
        )
        for _ in range(3):  # ... and inside it over each review's user
            r.db(
                "SELECT users.id, users.name FROM users WHERE users.id = %(pk_1)s",
                3.5,
                ("shop/views/authors.py", 29, "author_detail"),
                lazy=("Review.user", False),
            )
    r.page("authors/detail.html", 5.0)
    return r.finish()


def _cart():
    r = Route("shop", "GET", "/cart", 8).prelude()
    for line in (14, 31, 47, 58):  # current user re-loaded by four helpers: same statement, same params
        r.db(
            "SELECT users.id, users.name, users.email FROM users WHERE users.id = %(pk_1)s",
            1.2,
            ("shop/auth.py", line, "current_user"),
            params=2,
        )
        r.work(0.3)
    r.db(
        "SELECT cart_items.id, cart_items.book_id, cart_items.qty FROM cart_items WHERE cart_items.user_id = "
        "%(user_id_1)s",
        1.9,
        ("shop/views/cart.py", 20, "show_cart"),
    )
    r.page("cart.html", 3.0)
    return r.finish()


def _product():
    r = Route("shop", "GET", "/products/<int:product_id>", 10).prelude()
    code = ("shop/views/products.py", 33, "product_detail")
    r.cache("get", "product:{n}", 0.5, code, hit_p=0.15)  # poor hit ratio
    r.db(
        "SELECT products.id, products.name, products.price FROM products WHERE products.id = %(pk_1)s",
        9.0,
        code,
    )
    r.cache("set", "product:{n}", 0.4, code)
    r.page("products/detail.html", 3.0)
    return r.finish()


def _recommendations():
    r = Route("shop", "GET", "/recommendations", 9).prelude()
    code = ("shop/views/recs.py", 51, "recommendations")
    r.db("SELECT recs.item_id FROM recs WHERE recs.user_id = %(user_id_1)s LIMIT %(param_1)s", 2.0, code)
    for _ in range(25):  # one cache.get per item: N+1 cache
        r.cache("get", "rec:item:{n}", 0.6, code, hit_p=0.85)
    r.page("recs.html", 4.0)
    return r.finish()


def _sales_report():
    r = Route("shop", "GET", "/reports/sales", 0.5).prelude()
    r.db(
        "SELECT date_trunc(%(date_trunc_1)s, orders.created_at) AS day, sum(order_items.qty * "
        "order_items.price) FROM orders JOIN order_items ON orders.id = order_items.order_id "
        "GROUP BY day ORDER BY day",
        2600.0,
        ("shop/views/reports.py", 77, "sales_report"),
    )
    r.page("reports/sales.html", 12.0)
    return r.finish()


def _login():
    r = Route("shop", "POST", "/login", 2, error_p=0.01, status=302)
    code = ("shop/auth.py", 90, "login")
    r.db("SELECT users.id, users.password_hash FROM users WHERE users.email = %(email_1)s", 1.5, code)
    r.work(40.0)  # password hashing
    r.db("UPDATE users SET last_login=%(last_login)s WHERE users.id = %(users_id)s", 2.0, code)
    return r.finish()


def _health():
    return Route("shop", "GET", "/healthz", 1).finish(0.3)


def _checkout():
    r = Route("checkout", "POST", "/checkout", 2, error_p=0.02)
    code = ("checkout/views.py", 64, "checkout")
    r.db("SELECT carts.id, carts.total FROM carts WHERE carts.user_id = %(user_id_1)s", 2.0, code)
    # four slow outbound calls one after another: consecutive_http
    r.http("POST", "https://api.payments.example/v1/charges", 950.0, ("checkout/payments.py", 30, "charge"))
    r.http("POST", "https://fraud.example.net/score", 900.0, ("checkout/fraud.py", 12, "score"))
    r.http("GET", "https://api.carrier.example/v2/quote", 870.0, ("checkout/shipping.py", 40, "quote"))
    r.http("POST", "https://tax.example.org/v1/calculate", 910.0, ("checkout/tax.py", 18, "calculate"))
    r.db("INSERT INTO orders (user_id, total) VALUES (%(user_id)s, %(total)s) RETURNING orders.id", 3.0, code)
    for _ in range(3):  # three items: under the N+1 count threshold
        r.db(
            "INSERT INTO order_items (order_id, book_id, qty) VALUES (%(order_id)s, %(book_id)s, %(qty)s)",
            1.4,
            code,
        )
    return r.finish()


def _shipping_estimates():
    r = Route("checkout", "GET", "/shipping/estimates", 3)
    code = ("checkout/shipping.py", 71, "estimates")
    for _ in range(8):  # one HTTP call per carrier id: N+1 HTTP
        r.http("GET", "https://api.carrier.example/v2/rates/{n}", 55.0, code, mod=40)
    r.page("shipping/estimates.html", 2.0)
    return r.finish()


def _order():
    r = Route("checkout", "GET", "/orders/<int:order_id>", 4)
    code = ("checkout/views.py", 110, "order_detail")
    r.db("SELECT orders.id, orders.total, orders.status FROM orders WHERE orders.id = %(pk_1)s", 1.7, code)
    r.db(
        "SELECT order_items.id, order_items.book_id FROM order_items WHERE order_items.order_id = "
        "%(order_id_1)s",
        2.1,
        code,
    )
    r.http("GET", "https://api.carrier.example/v2/tracking/{n}", 120.0, code, mod=100000)
    r.page("orders/detail.html", 3.0)
    return r.finish()


def _stock():
    r = Route("inventory", "GET", "/stock/<sku>", 4)
    code = ("inventory/api.py", 25, "stock_level")
    r.connect(6.0, code)  # a new connection per request: connection churn
    r.db("SELECT qty, reserved FROM stock WHERE sku = 'SKU-{n}'", 1.4, code, dyn=90000)
    r.db("SELECT id, name FROM warehouses WHERE id IN (1, 2, 3)", 0.9, code)
    return r.finish()


def _reserve():
    r = Route("inventory", "POST", "/stock/reserve", 4)
    code = ("inventory/api.py", 61, "reserve")
    r.connect(6.0, code)
    for _ in range(12):  # raw SQL with literals in a loop: N+1 found after normalisation
        r.db("UPDATE stock SET reserved = reserved + 1 WHERE sku = 'SKU-{n}'", 4.5, code, dyn=90000)
    r.db("COMMIT", 2.0, code)
    return r.finish()


def _categories():
    r = Route("shop", "GET", "/categories", 12).prelude()
    code = ("shop/views/categories.py", 15, "categories")
    for table in (
        "books",
        "authors",
        "reviews",
        "publishers",
        "series",
        "tags",
        "awards",
        "editions",
        "translations",
        "formats",
        "languages",
        "collections",
    ):  # a loop of DIFFERENT statements
        r.db(
            f"SELECT count({table}.id) AS count_1 FROM {table} WHERE {table}.active = %(active_1)s", 1.5, code
        )
    r.page("categories.html", 4.0)
    return r.finish()


def build_routes() -> list[Route]:
    """All request types, in a stable order (the template id is the index)."""
    return [
        _home(),
        _books(22, 30),
        _books(12, 60),
        _book_detail(),
        _author_nested(),
        _cart(),
        _product(),
        _recommendations(),
        _sales_report(),
        _login(),
        _health(),
        _checkout(),
        _shipping_estimates(),
        _order(),
        _stock(),
        _reserve(),
        _categories(),
    ]


#: Planted problems: (kind, service, endpoint) tracehound must report on a generated database.
PLANTED = [
    ("n_plus_one_query", "shop", "/books"),
    ("n_plus_one_query", "shop", "/authors/<int:author_id>"),
    ("n_plus_one_query", "inventory", "/stock/reserve"),
    ("repeated_query", "shop", "/cart"),
    ("slow_query", "shop", "/reports/sales"),
    ("cache_miss_ratio", "shop", "/products/<int:product_id>"),
    ("n_plus_one_cache", "shop", "/recommendations"),
    ("n_plus_one_http", "checkout", "/shipping/estimates"),
    ("consecutive_http", "checkout", "/checkout"),
    ("connection_churn", "inventory", "/stock/<sku>"),
]

#: Clean counterparts: (kind, service, endpoint) that must NOT be reported.
MUST_NOT_FLAG = [
    ("n_plus_one_query", "shop", "/books/<int:book_id>"),  # selectinload IN batches
    ("n_plus_one_query", "checkout", "/checkout"),  # 3 inserts: below the count threshold
    ("n_plus_one_query", "shop", "/cart"),  # repeats with the SAME params: repeated_query, not N+1
    ("cache_miss_ratio", "shop", "/"),  # 95 % hits
    ("connection_churn", "shop", "/books"),  # pooled: no connect spans
    ("n_plus_one_http", "checkout", "/orders/<int:order_id>"),  # a single call
    ("n_plus_one_query", "shop", "/categories"),  # a loop of different statements
]
