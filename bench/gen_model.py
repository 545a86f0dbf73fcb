"""Span-slot model of the benchmark generator: a request type described once as span *slots*.

:class:`Route` builds a trace shape span by span (``db``, ``cache``, ``http``, ``render`` ... append
one span at a cursor, in ms relative to the request start) with attributes shaped like tracehound's
instrumentation emits them. The catalogue of routes is in ``gen_routes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SQLA_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
FLASK_SCOPE = "opentelemetry.instrumentation.flask"
CACHE_SCOPE = "tracehound.instrumentation.cache"
HTTP_SCOPE = "opentelemetry.instrumentation.requests"
JINJA_SCOPE = "opentelemetry.instrumentation.jinja2"
PYMYSQL_SCOPE = "opentelemetry.instrumentation.pymysql"

SERVICES = {
    # service.name -> (service.version, db.system, db.name, db server.address)
    "shop": ("2.14.0", "postgresql", "shop", "db-primary.internal"),
    "checkout": ("1.9.3", "postgresql", "orders", "db-primary.internal"),
    "inventory": ("0.7.1", "mysql", "inventory", "mysql-1.internal"),
}


@dataclass
class Slot:
    """One span of a route's trace; times in ms relative to the request start."""

    ordinal: int
    parent: int  # ordinal of the parent slot, -1 for the root server span
    start_ms: float
    dur_ms: float
    name: str
    kind: str
    scope: str
    attrs: dict
    params_mode: int = 0  # 0: no params hash, 1: distinct per span, 2: same for the whole trace
    cache_hit_p: float | None = None  # probability that cache.hit is 'true'
    dyn_key: str | None = None  # attribute whose value template has '{n}' filled per span
    dyn_tmpl: str | None = None
    dyn_mod: int = 1000
    leaf: bool = True


@dataclass
class Route:
    """One request type: ``weight`` is its share of traffic (relative), ``error_p`` its error rate."""

    service: str
    method: str
    route: str
    weight: float
    error_p: float = 0.002
    status: int = 200
    path_tmpl: str | None = None
    slots: list = field(default_factory=list)
    cursor: float = 0.5

    def __post_init__(self):
        path = self.path_tmpl or self.route.replace("<int:", "{").replace("<", "{").replace(">", "}")
        attrs = {
            "http.route": self.route,
            "http.request.method": self.method,
            "url.scheme": "https",
            "server.address": f"{self.service}.example.com",
            "network.protocol.version": "1.1",
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            "client.address": "10.0.3.17",
        }
        tmpl = path.replace("{book_id}", "{n}").replace("{product_id}", "{n}").replace("{author_id}", "{n}")
        tmpl = tmpl.replace("{order_id}", "{n}").replace("{sku}", "SKU-{n}")
        self.slots.append(
            Slot(
                0,
                -1,
                0.0,
                0.0,
                f"{self.method} {self.route}",
                "Server",
                FLASK_SCOPE,
                attrs,
                dyn_key="url.path",
                dyn_tmpl=tmpl,
                dyn_mod=5000,
                leaf=False,
            )
        )

    # -- builders: each appends one span at the cursor and advances it --------------------------
    def _add(self, dur_ms, name, kind, scope, attrs, gap_ms=0.15, advance=True, **kw) -> Slot:
        slot = Slot(len(self.slots), 0, self.cursor + gap_ms, dur_ms, name, kind, scope, attrs, **kw)
        self.slots.append(slot)
        if advance:
            self.cursor = slot.start_ms + dur_ms
        return slot

    def db(self, statement, dur_ms, code, params=1, lazy=None, dyn=None, **kw) -> Slot:
        """A SQLAlchemy/DB-API client span. ``code`` = (filepath, lineno, function);
        ``lazy`` = (relationship, uselist) marks an ORM lazy load; ``dyn`` = modulus to fill '{n}'
        in a raw-SQL literal."""
        _version, system, dbname, host = SERVICES[self.service]
        text_key = "db.query.text" if system == "mysql" else "db.statement"
        attrs = {
            "db.system": system,
            "db.system.name": system,
            "db.name": dbname,
            "server.address": host,
            "server.port": "3306" if system == "mysql" else "5432",
            text_key: statement,
            **_code(code),
        }
        if lazy:
            attrs["tracehound.orm.lazy_load"] = "true"
            attrs["tracehound.orm.relationship"] = lazy[0]
            attrs["tracehound.orm.uselist"] = "true" if lazy[1] else "false"
        scope = PYMYSQL_SCOPE if system == "mysql" else SQLA_SCOPE
        name = f"{statement.split()[0]} {dbname}"
        if dyn:
            del attrs[text_key]
            return self._add(
                dur_ms,
                name,
                "Client",
                scope,
                attrs,
                params_mode=0,
                dyn_key=text_key,
                dyn_tmpl=statement,
                dyn_mod=dyn,
                **kw,
            )
        return self._add(dur_ms, name, "Client", scope, attrs, params_mode=params, **kw)

    def connect(self, dur_ms, code):
        _version, system, dbname, host = SERVICES[self.service]
        attrs = {
            "db.system": system,
            "db.system.name": system,
            "db.name": dbname,
            "server.address": host,
            # the instrumentation marks connect spans that opened a new DB-API connection
            "tracehound.db.new_connection": "true",
            **_code(code),
        }
        return self._add(dur_ms, "connect", "Client", SQLA_SCOPE, attrs, params_mode=0)

    def cache(self, op, key, dur_ms, code, hit_p=None, size=512):
        attrs = {
            "cache.operation": op,
            "cache.key": key,
            "cache.backend": "redis",
            "cache.item_size": str(size),
            "db.system": "redis",
            **_code(code),
        }
        return self._add(
            dur_ms,
            f"cache.{op}",
            "Client",
            CACHE_SCOPE,
            attrs,
            cache_hit_p=hit_p if op in ("get", "get_many") else None,
        )

    def http(self, method, url_tmpl, dur_ms, code, status=200, mod=1000):
        host = url_tmpl.split("/")[2]
        attrs = {
            "http.request.method": method,
            "server.address": host,
            "server.port": "443",
            "http.response.status_code": str(status),
            **_code(code),
        }
        if "{n}" in url_tmpl:
            return self._add(
                dur_ms,
                method,
                "Client",
                HTTP_SCOPE,
                attrs,
                dyn_key="url.full",
                dyn_tmpl=url_tmpl,
                dyn_mod=mod,
            )
        attrs["url.full"] = url_tmpl
        return self._add(dur_ms, method, "Client", HTTP_SCOPE, attrs)

    def render(self, template, dur_ms, partials=()):
        """A jinja2.render span; ``partials`` = [(template, dur_ms)] rendered inside it, in order."""
        slot = self._add(dur_ms, "jinja2.render", "Internal", JINJA_SCOPE, {"jinja2.template_name": template})
        at = slot.start_ms + 0.2
        for name, ms in partials:
            child = Slot(
                len(self.slots),
                slot.ordinal,
                at,
                ms,
                "jinja2.render",
                "Internal",
                JINJA_SCOPE,
                {"jinja2.template_name": name},
            )
            self.slots.append(child)
            at += ms + 0.1
            slot.leaf = False
        slot.dur_ms = max(slot.dur_ms, at - slot.start_ms + 0.2)
        self.cursor = slot.start_ms + slot.dur_ms
        return slot

    def prelude(self):
        """What every shop page does before its own work: session, user, cart badge, flags, nav."""
        code = ("shop/middleware.py", 33, "load_request_context")
        self.cache("get", "session:{uuid}", 0.35, code, hit_p=0.99)
        self.db("SELECT users.id, users.name, users.is_admin FROM users WHERE users.id = %(pk_1)s", 1.1, code)
        self.db(
            "SELECT count(cart_items.id) AS count_1 FROM cart_items WHERE cart_items.user_id = %(user_id_1)s",
            0.9,
            ("shop/context.py", 12, "cart_badge"),
        )
        self.cache("get_many", "flags:{name}", 0.3, ("shop/flags.py", 40, "load_flags"), hit_p=0.98)
        self.db(
            "SELECT categories.id, categories.name FROM categories ORDER BY categories.name",
            1.0,
            ("shop/context.py", 25, "nav_categories"),
        )
        return self

    def page(self, template, dur_ms):
        """The page template inside the base layout with its nav and footer partials."""
        return self.render(
            template, dur_ms, partials=[("partials/nav.html", 0.8), ("partials/footer.html", 0.4)]
        )

    def work(self, ms):
        """Application code between spans (counts as the server span's self time)."""
        self.cursor += ms

    def finish(self, tail_ms=1.0) -> Route:
        self.slots[0].dur_ms = self.cursor + tail_ms
        return self


def _code(code) -> dict:
    path, line, func = code
    return {
        "code.filepath": path,
        "code.lineno": str(line),
        "code.function": func,
        "code.file.path": path,
        "code.line.number": str(line),
        "code.function.name": func,
    }
