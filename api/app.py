"""The FastAPI application: JSON API under ``/api/``, HTML pages, static assets, auth and errors.

``create_app(con, settings)`` is what ``tracehound serve`` mounts. ``con`` is a DuckDB connection
shared with the collector and analyzer; each request works on its own ``con.cursor()``.

Auth: when ``settings.api_token`` is set every route (API, pages, static, OpenAPI) needs it, given
as ``Authorization: Bearer TOKEN``. A browser can instead open any page once with ``?token=TOKEN``:
the answer sets an HttpOnly, SameSite=Strict cookie ``tracehound_token`` and redirects to the same
URL without the token, so later pages and the JSON twins work from the cookie. Without a token
setting nothing is checked (the server binds 127.0.0.1 by default).

Errors: every 4xx/5xx of the API is ``{"error": {"status": N, "message": "..."}}``; pages show the
same message in an HTML error page.

Headers: pages are served with a Content-Security-Policy that allows no script at all and no
network origin but this server, so anything that slipped out of a span stays inert.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .cache import QueryCache
from .queries import BadRequest, NotFound

log = logging.getLogger("tracehound.api")

HERE = Path(__file__).parent
TOKEN_COOKIE = "tracehound_token"
CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/api" or path.startswith("/openapi")


def error_response(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
    """The error answer: JSON body for the API, the error page for HTML routes."""
    accept = request.headers.get("accept", "")
    if _is_api(request) or ("application/json" in accept and "text/html" not in accept):
        return JSONResponse({"error": {"status": status, "message": message}}, status, headers=headers)
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid"))
    return "invalid request: " + "; ".join(parts)


def create_app(con, settings) -> FastAPI:
    """Build the app on DuckDB connection ``con`` with ``tracehound.settings.ServerSettings``.

    Uses ``settings.api_token`` (optional bearer token), ``settings.jaeger_url`` and
    ``settings.grafana_url`` (bases of the 'open in Jaeger/Grafana' links).
    """
    from .routes_analyze import router as analyze_router
    from .routes_html import make_templates
    from .routes_html import router as html_router
    from .routes_json import router as json_router

    app = FastAPI(
        title="tracehound",
        summary="Performance findings (N+1 queries, slow queries, cache misses, blocking HTTP) of Flask apps.",
        version=_version(),
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: no network at run time
        redoc_url=None,
    )
    app.state.con = con
    app.state.query_cache = QueryCache()
    app.state.settings = settings
    app.state.templates = make_templates(settings)
    token = getattr(settings, "api_token", None) or None

    @app.middleware("http")
    async def auth_and_headers(request: Request, call_next):
        if token:
            given = _bearer(request) or request.cookies.get(TOKEN_COOKIE)
            query_token = request.query_params.get("token")
            if query_token is not None and not _is_api(request) and request.method == "GET":
                if not hmac.compare_digest(query_token.encode(), token.encode()):
                    return error_response(request, 401, "wrong token in ?token=; ask the server's operator")
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urlencode(rest) if rest else "")
                redirect = RedirectResponse(target, status_code=303)
                redirect.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return redirect
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                message = "this tracehound needs its API token: send 'Authorization: Bearer TOKEN'" + (
                    "" if _is_api(request) else ", or open this page once with ?token=TOKEN"
                )
                return error_response(request, 401, message, headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no page or API route at {request.url.path!r}"
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path!r}"
        return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(request, 422, _validation_message(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return error_response(request, 404, str(exc))

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return error_response(request, 400, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error_response(request, 500, f"internal error ({type(exc).__name__}); see the server log")

    app.include_router(json_router)
    app.include_router(analyze_router)
    app.include_router(html_router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _version() -> str:
    from tracehound import __version__

    return __version__
