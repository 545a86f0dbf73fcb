"""SQLAlchemy extras on top of the upstream SQLAlchemy instrumentation's DB spans.

Installed as class-level listeners on :class:`sqlalchemy.engine.Engine` and
:class:`sqlalchemy.orm.Session`, so they apply to every engine and session, existing or future:

* ``do_execute`` / ``do_executemany`` / ``do_execute_no_params``: the upstream span of the
  statement (``context._otel_span``, created in upstream's ``before_cursor_execute``) gets
  ``tracehound.db.params_hash`` and, for ORM lazy loads, the ``tracehound.orm.*`` attributes.
  The statement is then executed by the dialect with instrumentation suppressed, so the DB-API
  instrumentations (sqlite3, psycopg, pymysql) do not add a second span for the same query.
* ``do_orm_execute``: a relationship lazy load (``ORMExecuteState.lazy_loaded_from``) runs its
  statement with ``tracehound.orm.lazy_load=True``, ``tracehound.orm.relationship="Book.author"``
  and ``tracehound.orm.uselist`` in a context variable the listener above reads.

``tracehound.db.params_hash`` is a keyed BLAKE2b (64 bit, hex) of the bound parameters' ``repr``
with a per-process random salt (``TRACEHOUND_PARAMS_SALT`` fixes it). It is only meant to be
compared within one trace; the parameter values are never recorded.
"""

from __future__ import annotations

import contextvars
import hashlib

from opentelemetry.instrumentation.utils import suppress_instrumentation

from .config import params_salt

_SALT = params_salt()
_ORM_LOAD: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tracehound_orm_load", default=None)
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
        span.set_attribute("tracehound.db.params_hash", params_hash(parameters))
        orm_load = _ORM_LOAD.get()
        if orm_load is not None and not (context.isinsert or context.isupdate or context.isdelete):
            span.set_attributes(orm_load)
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


def _do_orm_execute(orm_execute_state):
    if orm_execute_state.lazy_loaded_from is None or not orm_execute_state.is_relationship_load:
        return None
    found = relationship_of(orm_execute_state)
    if found is None:
        return None
    relationship, uselist = found
    token = _ORM_LOAD.set(
        {
            "tracehound.orm.lazy_load": True,
            "tracehound.orm.relationship": relationship,
            "tracehound.orm.uselist": uselist,
        }
    )
    try:
        return orm_execute_state.invoke_statement()
    finally:
        _ORM_LOAD.reset(token)


def install() -> bool:
    """Register the listeners once; False when SQLAlchemy is not importable."""
    global _installed
    if _installed:
        return True
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session
    except ImportError:
        return False
    event.listen(Engine, "do_execute", _do_execute)
    event.listen(Engine, "do_executemany", _do_executemany)
    event.listen(Engine, "do_execute_no_params", _do_execute_no_params)
    event.listen(Session, "do_orm_execute", _do_orm_execute)
    _installed = True
    return True
