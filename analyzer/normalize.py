"""Normalisation of SQL statements, URLs and cache keys, and stable fingerprints.

Detectors group spans by *what they do*, not by the values they carry: ``SELECT * FROM book WHERE
id = 7`` and ``... id = %s`` are the same statement. These functions are pure and cheap, but the
analyzer never calls them per span: it normalises each DISTINCT statement / URL / key once in
Python and joins the result back in DuckDB (see :mod:`tracehound.analyzer.spans`). An ORM app has
a few hundred distinct statements however many million spans it produces.

Rules (chosen to agree with Sentry's span grouping, ``default:2022-10-27`` strategy):

* SQL: comments dropped; string literals (``'..'``, ``E'..'``, ``N'..'``), numbers, hex literals,
  ``TRUE``/``FALSE`` and every bind-parameter style (``?``, ``%s``, ``%(name)s``, ``$1``, ``:name``,
  ``@p1``/``@name``) become ``?``; ``IN (?, ?, ...)`` and ``VALUES (..), (..)`` collapse to one
  group *after* literals are replaced; whitespace collapses to one space; a trailing ``;`` goes.
  Double-quoted and backquoted identifiers stay as they are (they name tables, not values).
* URL: ``METHOD host[:port]/path``; query string and fragment dropped; path segments that are
  numeric become ``{n}``, UUIDs ``{uuid}``, hex strings of 8+ chars with a digit ``{hex}``;
  a numeric prefix before a file extension too (``1001.json`` -> ``{n}.json``).
* Cache keys: the same placeholders inside ``:``/``/``/``.``/``_``/``-`` separated keys
  (``book:12`` -> ``book:{n}``). Keys arriving already normalised by the instrumentation pass through.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

_SQL_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_SQL_STRING = re.compile(r"(?:\b[EeNnBbXx])?'(?:[^'\\]|\\.|'')*'")
_SQL_DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.S)
_SQL_PARAMS = re.compile(
    r"%\(\w+\)s|%s|\$\d+|(?<![:\w]):[A-Za-z_]\w*|@[A-Za-z_]\w*|(?<![\w$.])0[xX][0-9a-fA-F]+\b"
    r"|(?<![\w$.\"`])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w\"`])|\b(?:TRUE|FALSE|true|false)\b"
)
_SQL_IN_LIST = re.compile(r"\b(IN)\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_SQL_VALUES_LIST = re.compile(r"\b(VALUES)\s*(\([^()]*\))(?:\s*,\s*\([^()]*\))+", re.I)
_SQL_SPACES = re.compile(r"\s+")
_SQL_COMMA = re.compile(r"\s*,\s*")
_SQL_OPEN = re.compile(r"\(\s+")
_SQL_CLOSE = re.compile(r"\s+\)")
#: An ``IN`` list of two or more items once values are ``?``: a batched (selectinload-style) query.
_SQL_IN_BATCH = re.compile(r"\bIN\s*\(\s*\?\s*,|__\[POSTCOMPILE_", re.I)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^(?=.*\d)[0-9a-fA-F]{8,}$")
_NUM = re.compile(r"^\d+$")
_NUM_EXT = re.compile(r"^\d+(\.[A-Za-z0-9]+)$")
_KEY_TOKEN = re.compile(r"[^:/._\-\s]+")


def normalize_sql(statement: str) -> str:
    """Return ``statement`` with values replaced by ``?`` (see the module docstring for the rules).

    Never raises; ``''`` for an empty statement.
    """
    if not statement:
        return ""
    s = _values_only(statement)
    s = _SQL_IN_LIST.sub(lambda m: f"{m.group(1)} (?)", s)
    s = _SQL_VALUES_LIST.sub(lambda m: f"{m.group(1)} {m.group(2)}", s)
    return s


def _values_only(statement: str) -> str:
    s = _SQL_COMMENT.sub(" ", statement)
    s = _SQL_DOLLAR_QUOTED.sub("?", s)
    s = _SQL_STRING.sub("?", s)
    s = _SQL_PARAMS.sub("?", s)
    s = _SQL_SPACES.sub(" ", s).strip().rstrip(";").strip()
    s = _SQL_COMMA.sub(", ", s)
    s = _SQL_OPEN.sub("(", s)
    return _SQL_CLOSE.sub(")", s)


def sql_has_literals(statement: str) -> bool:
    """True when the raw statement embeds literal values (its text differs per parameter set).

    Used to treat two spans of raw SQL with different literals as different parameters when the
    instrumentation gave no ``tracehound.db.params_hash``.
    """
    if not statement:
        return False
    s = _SQL_COMMENT.sub(" ", statement)
    if _SQL_STRING.search(s):
        return True
    return any(not _is_placeholder(m.group(0)) for m in _SQL_PARAMS.finditer(s))


def _is_placeholder(token: str) -> bool:
    return token.startswith(("%", "$", ":", "@"))


def sql_is_batch(statement: str) -> bool:
    """True for a batched query: an ``IN (a, b, ...)`` list of two or more items (selectinload)."""
    return bool(statement) and bool(_SQL_IN_BATCH.search(_values_only(statement)))


def sql_is_truncated(statement: str) -> bool:
    """True when a client truncated the statement (ends with ``...``): it cannot be grouped safely."""
    return statement.rstrip().endswith("...")


def sql_operation(normalized: str) -> str:
    """First keyword of a normalised statement, upper-cased (``SELECT``, ``UPDATE``...; ``''`` if none)."""
    head = normalized.lstrip("( ").split(" ", 1)[0]
    return head.upper() if head.isalpha() else ""


def _segment(seg: str) -> str:
    if not seg:
        return seg
    if _NUM.match(seg):
        return "{n}"
    if _UUID.match(seg):
        return "{uuid}"
    if _HEX.match(seg):
        return "{hex}"
    m = _NUM_EXT.match(seg)
    if m:
        return "{n}" + m.group(1)
    return seg


def normalize_url(method: str | None, url: str | None) -> str:
    """``'GET api.example.com/users/{n}/orders'`` from a method and a full URL (or a path).

    Query string and fragment are dropped; ids become placeholders. The method is upper-cased
    (``''`` if unknown, then the result has no method prefix). Never raises.
    """
    method = (method or "").upper()
    url = url or ""
    try:
        parts = urlsplit(url)
        host, path = parts.netloc, parts.path
    except ValueError:
        host, path = "", url.split("?", 1)[0]
    if not host and not parts.scheme and not path.startswith("/"):
        host, _, rest = path.partition("/")
        path = "/" + rest
    host = host.rsplit("@", 1)[-1].lower()
    path = "/".join(_segment(s) for s in path.split("/"))
    target = f"{host}{path}" if host else path
    return f"{method} {target}".strip()


def normalize_cache_key(key: str | None) -> str:
    """Replace numeric / UUID / hex tokens of a cache key (or a redis command line) with placeholders.

    ``'GET book:12'`` -> ``'GET book:{n}'``; ``'user:{n}'`` stays as it is.
    """
    if not key:
        return ""
    return _KEY_TOKEN.sub(lambda m: _segment(m.group(0)), key)


def fingerprint(*parts: object) -> str:
    """sha256 hex of the parts joined by U+001F: stable across runs, processes and versions."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def finding_id(fp: str) -> str:
    """A finding's id: the first 16 hex chars of its fingerprint (see ``analyzer/schema.py``)."""
    return fp[:16]
