"""Flask-Caching and redis-py cache spans.

Flask-Caching: the ``Cache`` facade methods (which the ``cached`` and ``memoize`` decorators
call too) are wrapped to emit CLIENT spans named ``cache.<operation>`` with

* ``cache.operation``: get, get_many, has, set, add, delete, set_many, delete_many;
* ``cache.hit`` (bool, reads only; ``get_many`` is a hit only when every key was found, and
  also carries ``tracehound.cache.hit_count`` / ``tracehound.cache.miss_count``);
* ``cache.key``: normalised (see :func:`normalise_key`; ``memoize`` keys, which are opaque
  hashes, become ``memoize:<module>.<function>``), or ``cache.keys`` joined by spaces for
  multi-key calls;
* ``cache.backend``: the backend class name (``RedisCache``, ``SimpleCache``, ...);
* ``cache.item_size`` (bytes) when the value is ``str``/``bytes`` or the redis reply is seen;
* ``tracehound.cache.decorator``: ``cached`` or ``memoize`` for decorator lookups.

``memoize`` reads and writes its own version keys (``<function>_memver``) on every call. Those
calls are NOT emitted: they are bookkeeping, not lookups of cached results, and would otherwise
look like misses.

redis-py: the redis instrumentation's ``response_hook`` adds ``cache.hit`` to GET/MGET spans
(``cache.hit_count`` / ``miss_count`` for MGET) unless the call runs inside a Flask-Caching
operation, whose span already carries the hit (so the analyzer never counts a lookup twice).
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import re
import sys

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from .codeloc import code_attributes
from .config import cache_key_mode

_CURRENT: contextvars.ContextVar[object | None] = contextvars.ContextVar("tracehound_cache_op", default=None)
_MEMO_KEYS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tracehound_memo_keys", default=None)
_DECORATED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tracehound_cached_fn", default=None)
_INTERNAL = object()

_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
# an opaque token: 16+ chars with at least 4 digits; no "/" so URL paths are not swallowed
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?=(?:[A-Za-z+_=-]*[0-9]){4})[A-Za-z0-9+_=-]{16,}")
_NUMBER = re.compile(r"(?<![A-Za-z0-9])\d+(?![A-Za-z0-9])")
_SEPARATORS = re.compile(r"([:/|#,;]+)")
_PLACEHOLDER = r"\{(?:n|uuid|hash|s|v)\}"
_IDENTIFIER = re.compile(rf"(?:[a-z_.-]|{_PLACEHOLDER})+|(?:[A-Z_.-]|{_PLACEHOLDER})+")
_MODE = cache_key_mode()
_log = logging.getLogger("tracehound.instrumentation")
_READS = {"get", "get_many", "has"}
_OPERATIONS = ("get", "get_many", "has", "set", "add", "delete", "set_many", "delete_many")
_installed = False
_tracer = None


def normalise_key(key) -> str:
    """Cache key without user data (the ``cache.key`` attribute).

    The key is cut into segments at ``:``, ``/``, ``|``, ``#``, ``,`` and ``;``. UUIDs become
    ``{uuid}``, long opaque tokens (16+ characters, at least 4 digits) ``{hash}``, digit runs that stand
    alone or next to ``-``/``_``/``.`` ``{n}``. A segment is then kept only when it looks like a
    fixed identifier: lowercase words (``a-z``, ``_``, ``-``, ``.``) or an UPPER_CASE constant,
    possibly with those placeholders, at most 64 characters. Anything else (``@``, ``%``,
    spaces, capitalised or mixed-case words, digits glued to letters) becomes ``{s}``. After
    ``?`` (and in any ``name=value`` segment) every value becomes ``{v}``; parameter names are
    judged like segments. Already normalised keys come back unchanged.
    ``TRACEHOUND_CACHE_KEYS=hash`` hashes the result.

    Limitation: a lowercase word (``user:alice``) cannot be told from a fixed word
    (``home:featured``) and is kept; applications keying by user name should use
    ``TRACEHOUND_CACHE_KEYS=hash``.

    >>> normalise_key("book:42:author")
    'book:{n}:author'
    >>> normalise_key("user:alice@example.com:profile")
    'user:{s}:profile'
    """
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    text = _UUID.sub("{uuid}", text)
    text = _TOKEN.sub("{hash}", text)
    path, mark, query = text.partition("?")
    parts = _SEPARATORS.split(path)
    out = [part if i % 2 else _segment(part) for i, part in enumerate(parts)]
    if mark:
        pairs = (pair.partition("=") for pair in query.split("&"))
        out.append("?" + "&".join(_segment(k) + (eq and "={v}") for k, eq, _v in pairs))
    text = "".join(out)
    if _MODE == "hash":
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return text


def _segment(segment: str) -> str:
    """One key segment kept as a fixed identifier, or ``{s}`` / ``name={v}`` (see
    :func:`normalise_key`)."""
    if not segment:
        return segment
    name, eq, _value = segment.partition("=")
    if eq:
        return _segment(name) + "={v}"
    segment = _NUMBER.sub("{n}", segment)
    if len(segment) <= 64 and _IDENTIFIER.fullmatch(segment):
        return segment
    return "{s}"


def _size(value) -> int | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    return None


def _key_attr(key) -> str:
    memo = _MEMO_KEYS.get()
    if memo and key in memo:
        return memo[key]
    return normalise_key(key)


class _Op:
    """The Flask-Caching operation running in this context (read by the redis response hook)."""

    __slots__ = ("span",)

    def __init__(self, span):
        self.span = span


def _attributes(cache, operation: str, args: tuple, caller) -> dict:
    """Span attributes of one Flask-Caching facade call (before it runs); ``caller`` is the
    code object of the function that called the facade."""
    attrs = {"cache.operation": operation, "cache.backend": type(cache.cache).__name__}
    memo = _MEMO_KEYS.get()
    if operation in ("get_many", "set_many", "delete_many"):
        keys = list(args[0].keys()) if operation == "set_many" and args else list(args)
        attrs["cache.keys"] = " ".join(sorted({_key_attr(k) for k in keys}))
        attrs["cache.key"] = attrs["cache.keys"]
    elif args:
        attrs["cache.key"] = _key_attr(args[0])
        if memo and args[0] in memo:
            attrs["tracehound.cache.decorator"] = "memoize"
    decorated = _DECORATED.get()
    if (
        decorated is not None
        and "tracehound.cache.decorator" not in attrs
        and caller.co_name == "decorated_function"
        and "flask_caching" in caller.co_filename
    ):
        attrs.update(decorated)
    if operation in ("set", "add") and len(args) > 1:
        size = _size(args[1])
        if size is not None:
            attrs["cache.item_size"] = size
    return attrs


def _traced(operation: str, method):
    name = "cache." + operation

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        current = _CURRENT.get()
        if current is not None:  # nested facade call, or memoize's version bookkeeping
            return method(self, *args, **kwargs)
        try:
            attrs = _attributes(self, operation, args, sys._getframe(1).f_code)
        except Exception:  # noqa: BLE001 - unusual arguments: a span with fewer attributes
            attrs = {"cache.operation": operation}
        with _tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attrs) as span:
            token = _CURRENT.set(_Op(span))
            try:
                result = method(self, *args, **kwargs)
            finally:
                _CURRENT.reset(token)
            if span.is_recording() and operation in _READS:
                _record_result(span, operation, result)
            return result

    return wrapper


def _record_result(span, operation: str, result) -> None:
    """``cache.hit`` (and size / counts) from a read's result; never raises."""
    try:
        if operation == "get":
            span.set_attribute("cache.hit", result is not None)
            size = _size(result)
            if size is not None:
                span.set_attribute("cache.item_size", size)
        elif operation == "has":
            span.set_attribute("cache.hit", bool(result))
        else:
            values = list(result or ())
            hits = sum(v is not None for v in values)
            span.set_attribute("cache.hit", bool(values) and hits == len(values))
            span.set_attribute("tracehound.cache.hit_count", hits)
            span.set_attribute("tracehound.cache.miss_count", len(values) - hits)
    except Exception:  # noqa: BLE001 - an odd result type: no hit attribute, never an app error
        _log.debug("tracehound: could not record a cache result", exc_info=True)


def _wrap_memoize_version(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        token = _CURRENT.set(_INTERNAL)
        try:
            return method(self, *args, **kwargs)
        finally:
            _CURRENT.reset(token)

    return wrapper


def _wrap_memoize_make_cache_key(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        make_cache_key = method(self, *args, **kwargs)

        @functools.wraps(make_cache_key)
        def recording(f, *fargs, **fkwargs):
            key = make_cache_key(f, *fargs, **fkwargs)
            name = getattr(f, "__qualname__", getattr(f, "__name__", "function"))
            module = getattr(f, "__module__", None)
            label = f"memoize:{module}.{name}" if module else f"memoize:{name}"
            _MEMO_KEYS.set({key: label})
            return key

        return recording

    return wrapper


def _wrap_cached(method):
    """``Cache.cached``: lookups made by the decorator carry ``tracehound.cache.decorator=cached``
    and, since no application frame is on the stack yet, the decorated function's location."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        decorator = method(self, *args, **kwargs)

        @functools.wraps(decorator)
        def tracing_decorator(f):
            decorated = decorator(f)
            code = getattr(f, "__code__", None)
            info = {"tracehound.cache.decorator": "cached"}
            if code is not None:
                qualname = getattr(code, "co_qualname", code.co_name)
                info.update(
                    code_attributes(
                        code.co_filename, code.co_firstlineno, qualname, getattr(f, "__module__", None)
                    )
                )

            @functools.wraps(decorated)
            def call(*fargs, **fkwargs):
                token = _DECORATED.set(info)
                try:
                    return decorated(*fargs, **fkwargs)
                finally:
                    _DECORATED.reset(token)

            for attr in ("uncached", "cache_timeout", "make_cache_key"):
                if hasattr(decorated, attr):
                    setattr(call, attr, getattr(decorated, attr))
            return call

        return tracing_decorator

    return wrapper


def install_flask_caching() -> bool:
    """Wrap ``flask_caching.Cache`` once; False when Flask-Caching is not importable."""
    global _installed, _tracer
    if _installed:
        return True
    try:
        from flask_caching import Cache
    except ImportError:
        return False
    from tracehound import __version__

    _tracer = trace.get_tracer("tracehound.instrumentation.flask_caching", __version__)
    for operation in _OPERATIONS:
        original = getattr(Cache, operation, None)
        if original is not None:
            setattr(Cache, operation, _traced(operation, original))
    Cache.cached = _wrap_cached(Cache.cached)
    if hasattr(Cache, "_memoize_version"):
        Cache._memoize_version = _wrap_memoize_version(Cache._memoize_version)
    if hasattr(Cache, "_memoize_make_cache_key"):
        Cache._memoize_make_cache_key = _wrap_memoize_make_cache_key(Cache._memoize_make_cache_key)
    _installed = True
    return True


def redis_response_hook(span, instance, response) -> None:
    """redis instrumentation ``response_hook``: ``cache.hit`` on GET/MGET spans.

    Inside a Flask-Caching operation the hit is recorded on that operation's span instead,
    together with the size of the raw reply (``cache.item_size``).
    """
    if not span.is_recording():
        return
    command = span.name.split(" ", 1)[0].upper()
    if command not in ("GET", "MGET"):
        return
    current = _CURRENT.get()
    if current is not None:
        if isinstance(current, _Op) and command == "GET" and current.span.is_recording():
            size = _size(response)
            if size is not None:
                current.span.set_attribute("cache.item_size", size)
        return
    if command == "GET":
        span.set_attribute("cache.hit", response is not None)
        size = _size(response)
        if size is not None:
            span.set_attribute("cache.item_size", size)
    else:
        values = list(response or ())
        hits = sum(v is not None for v in values)
        span.set_attribute("cache.hit", bool(values) and hits == len(values))
        span.set_attribute("tracehound.cache.hit_count", hits)
        span.set_attribute("tracehound.cache.miss_count", len(values) - hits)
