"""SQLAlchemy extras on top of the upstream SQLAlchemy instrumentation's DB spans.

Installed as class-level listeners on :class:`sqlalchemy.engine.Engine` and
:class:`sqlalchemy.orm.Session`, so they apply to every engine and session, existing or future:

* ``do_execute`` / ``do_executemany`` / ``do_execute_no_params``: the upstream span of the
  statement (``context._otel_span``, created in upstream's ``before_cursor_execute``) gets
  ``tracehound.db.params_hash`` and, for ORM lazy loads, the ``tracehound.orm.*`` attributes.
  The statement is then executed by the dialect with instrumentation suppressed, so the DB-API
  instrumentations (sqlite3, psycopg, pymysql) do not add a second span for the same query.
* ``do_orm_execute``: a relationship lazy load (``ORMExecuteState.lazy_loaded_from``) gets an
  execution option carrying ``tracehound.orm.lazy_load=True``,
  ``tracehound.orm.relationship="Book.author"`` and ``tracehound.orm.uselist``; it reaches the
  statement's ExecutionContext, where the listener above copies it onto the span. Only SELECTs
  can be lazy loads: other statements (``session.execute(text("UPDATE ..."))``) are left alone.
* Pool ``connect``: fires only when the pool opens a *new* DB-API connection. Upstream's
  ``connect`` span (one per ``Engine.connect()``, i.e. per pool checkout) is then the current span
  and gets ``tracehound.db.new_connection=true``; checkouts of pooled connections stay unmarked.
  The analyzer's ``connection_churn`` counts the marked spans only.

``tracehound.db.params_hash`` is a keyed BLAKE2b (64 bit, hex) of the bound parameters' ``repr``
with a per-process random salt (``TRACEHOUND_PARAMS_SALT`` fixes it). It is only meant to be
compared within one trace; the parameter values are never recorded.
"""

from __future__ import annotations

import hashlib
import logging

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from .config import params_salt

_SALT = params_salt()
_log = logging.getLogger("tracehound.instrumentation")
_installed = False


def params_hash(parameters) -> str:
    """16 hex digits identifying ``parameters`` within this process (salted; values not recoverable)."""
    data = repr(parameters).encode("utf-8", "backslashreplace")
    return hashlib.blake2b(data, key=_SALT, digest_size=8).hexdigest()


def _annotate(context, parameters) -> bool:
    """Put tracehound attributes on the statement's span; True when there is such a span."""
    span = getattr(context, "_otel_span", None)
    if span is None:
        return False
    if span.is_recording():
        try:
            span.set_attribute("tracehound.db.params_hash", params_hash(parameters))
            orm_load = context.execution_options.get("_tracehound_orm_load")
            if orm_load is not None:
                span.set_attributes(orm_load)
        except Exception:  # noqa: BLE001 - e.g. a parameter whose repr() raises: never break the query
            _log.debug("tracehound: could not annotate a SQLAlchemy span", exc_info=True)
    return True


def _do_execute(cursor, statement, parameters, context):
    if not _annotate(context, parameters):
        return None
    with suppress_instrumentation():
        context.dialect.do_execute(cursor, statement, parameters, context)
    return True


def _do_executemany(cursor, statement, parameters, context):
    if not _annotate(context, parameters):
        return None
    with suppress_instrumentation():
        context.dialect.do_executemany(cursor, statement, parameters, context)
    return True


def _do_execute_no_params(cursor, statement, context):
    if not _annotate(context, ()):
        return None
    with suppress_instrumentation():
        context.dialect.do_execute_no_params(cursor, statement, context)
    return True


def relationship_of(orm_execute_state) -> tuple[str, bool] | None:
    """``("Book.author", uselist)`` for a relationship load, else None."""
    path = orm_execute_state.loader_strategy_path
    prop = None
    if path is not None:
        try:
            prop = path.prop
        except AttributeError:
            prop = None
        if prop is None:
            try:
                prop = path[-1]
            except (IndexError, TypeError, KeyError):
                prop = None
    key = getattr(prop, "key", None)
    parent = getattr(prop, "parent", None)
    if key is None or parent is None:
        return None
    return f"{parent.class_.__name__}.{key}", bool(getattr(prop, "uselist", False))


def _pool_connect(_dbapi_connection, _connection_record):
    span = trace.get_current_span()
    if span.is_recording() and getattr(span, "name", None) == "connect":
        span.set_attribute("tracehound.db.new_connection", True)


def _do_orm_execute(orm_execute_state):
    # lazy_loaded_from raises InvalidRequestError for anything but a SELECT: test that first.
    if not orm_execute_state.is_select or not orm_execute_state.is_relationship_load:
        return None
    if orm_execute_state.lazy_loaded_from is None:
        return None
    found = relationship_of(orm_execute_state)
    if found is None:
        return None
    relationship, uselist = found
    # Execution options travel with this statement down to its ExecutionContext, where
    # _annotate() reads them: no second invocation, nothing leaks to other statements.
    orm_execute_state.update_execution_options(
        _tracehound_orm_load={
            "tracehound.orm.lazy_load": True,
            "tracehound.orm.relationship": relationship,
            "tracehound.orm.uselist": uselist,
        }
    )
    return None


def install_dbapi_params_hash() -> bool:
    """``tracehound.db.params_hash`` on raw DB-API spans too (sqlite3, psycopg, pymysql used
    without SQLAlchemy): wraps the upstream DB-API ``CursorTracer._populate_span`` (its private
    API; if it changes, raw DB-API spans just lack the hash)."""
    try:
        from opentelemetry.instrumentation.dbapi import CursorTracer
    except ImportError:
        return False
    original = getattr(CursorTracer, "_populate_span", None)
    if original is None or getattr(original, "_tracehound", False):
        return original is not None

    def _populate_span(self, span, cursor, *args):
        original(self, span, cursor, *args)
        if len(args) > 1 and span.is_recording():
            try:
                span.set_attribute("tracehound.db.params_hash", params_hash(args[1]))
            except Exception:  # noqa: BLE001 - never break the query
                _log.debug("tracehound: could not hash DB-API parameters", exc_info=True)

    _populate_span._tracehound = True
    CursorTracer._populate_span = _populate_span
    return True


def install() -> bool:
    """Register the listeners once; False when SQLAlchemy is not importable."""
    global _installed
    if _installed:
        return True
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session
        from sqlalchemy.pool import Pool
    except ImportError:
        return False
    event.listen(Engine, "do_execute", _do_execute)
    event.listen(Engine, "do_executemany", _do_executemany)
    event.listen(Engine, "do_execute_no_params", _do_execute_no_params)
    event.listen(Session, "do_orm_execute", _do_orm_execute)
    event.listen(Pool, "connect", _pool_connect)
    _installed = True
    return True
