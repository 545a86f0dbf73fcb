"""Refuse a command cleanly when an optional dependency (an extra) is not installed.

The base install (``pip install tracehound``) holds only what users' apps need; ``serve``,
``analyze``, ``report`` and ``demo`` need the ``server`` extra (and ``demo`` the ``demo`` extra).
Without them a command would die on a raw ``ModuleNotFoundError`` traceback; instead
:func:`require_extra` prints one line saying what to install and exits 2.
"""

from __future__ import annotations

import importlib

import click

#: Top-level modules of the ``server`` extra (see pyproject.toml).
SERVER_MODULES = ("duckdb", "pyarrow", "numpy", "fastapi", "uvicorn", "grpc", "jinja2", "pygal")
#: Top-level modules of the ``demo`` extra.
DEMO_MODULES = ("flask", "flask_sqlalchemy", "flask_caching", "sqlalchemy", "requests")


def require_extra(command: str, extra: str, modules: tuple[str, ...]) -> None:
    """Import ``modules``; if one is missing, print one line naming ``extra`` and exit 2.

    ``command`` is the subcommand name (``serve``), ``extra`` what to install (``server`` or
    ``server,demo``). Raises ``SystemExit(2)`` after printing
    ``tracehound serve needs the server extra: pip install 'tracehound[server]' (no module duckdb)``.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            plural = "extras" if "," in extra else "extra"
            click.echo(
                f"tracehound {command} needs the {extra} {plural}: pip install 'tracehound[{extra}]' "
                f"(no module {name})",
                err=True,
            )
            raise SystemExit(2) from None
