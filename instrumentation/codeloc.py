"""Code location: the innermost application frame of the code that started a client span.

A frame is *application code* unless its file lies in the standard library, a site-packages or
dist-packages directory, tracehound itself, or the SQLAlchemy, Flask, Werkzeug or OpenTelemetry
packages (wherever those are installed), or under a ``TRACEHOUND_CODE_EXCLUDE`` prefix. When
``TRACEHOUND_CODE_INCLUDE`` is set, only frames under those prefixes count; the longest matching
prefix decides (see :class:`CodeLocator`), so a venv inside an included project stays excluded. Decisions are cached per file name, so the cost is one dict lookup per stack frame
(``bench/overhead.py`` measures it).

Frames inside compiled Jinja2 templates report the template file and the template line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import site
import sys
import sysconfig

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind

from .config import env_prefixes

_UNSEEN = object()
_LIBRARY_PACKAGES = ("sqlalchemy", "flask", "werkzeug", "opentelemetry", "flask_sqlalchemy", "flask_caching")


def _package_dir(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.abspath(list(spec.submodule_search_locations)[0]) + os.sep


def default_excludes() -> tuple[str, ...]:
    """Path prefixes that are never application code (see the module docstring)."""
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    tracehound_dir = _package_dir("tracehound")
    prefixes = {here}
    if tracehound_dir:
        prefixes.add(tracehound_dir)
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            prefixes.add(os.path.abspath(paths[key]) + os.sep)
    try:
        for p in site.getsitepackages() + [site.getusersitepackages()]:
            prefixes.add(os.path.abspath(p) + os.sep)
    except AttributeError:  # virtualenv's old site.py
        pass
    for name in _LIBRARY_PACKAGES:
        d = _package_dir(name)
        if d:
            prefixes.add(d)
    return tuple(sorted(prefixes))


def _as_dir(prefix: str) -> str:
    """``prefix`` ending with exactly one separator, so ``/srv/app`` never matches ``/srv/application``."""
    return prefix.rstrip(os.sep) + os.sep


class CodeLocator:
    """Finds the innermost application frame; configured once from the environment.

    ``include``/``exclude`` default to ``TRACEHOUND_CODE_INCLUDE``/``TRACEHOUND_CODE_EXCLUDE``.
    Whether a file is application code is decided by the LONGEST matching prefix among the
    includes, the user excludes and the default excludes (:func:`default_excludes`, plus every
    ``.../site-packages/`` or ``.../dist-packages/`` directory on the file's own path). So with
    ``TRACEHOUND_CODE_INCLUDE=/srv/app`` and a venv at ``/srv/app/.venv``, SQLAlchemy in the
    venv's site-packages is still excluded, unless a longer include prefix names it. On a tie an
    exclude wins. When no prefix matches, the file is application code only if no include is
    configured. Prefixes match whole path components.
    """

    def __init__(self, include: tuple[str, ...] | None = None, exclude: tuple[str, ...] | None = None):
        self.include = env_prefixes("TRACEHOUND_CODE_INCLUDE") if include is None else include
        user_exclude = env_prefixes("TRACEHOUND_CODE_EXCLUDE") if exclude is None else exclude
        self.user_exclude = user_exclude
        self.exclude = default_excludes() + user_exclude
        rules = {_as_dir(os.path.abspath(p)): True for p in self.include}
        rules.update({_as_dir(os.path.abspath(p)): False for p in self.exclude})  # tie: exclude
        # longest first: the first match is the longest matching prefix
        self._rules = sorted(rules.items(), key=lambda item: len(item[0]), reverse=True)
        self._is_app: dict[str, str | None] = {}

    def is_app_file(self, filename: str) -> bool:
        """True when frames of ``filename`` count as application code (see the class docstring)."""
        if not filename or filename.startswith("<"):
            return False
        path = os.path.abspath(filename) + os.sep
        packages = max(
            (path.rfind(os.sep + name + os.sep) for name in ("site-packages", "dist-packages")),
            default=-1,
        )
        packages_len = packages + len("site-packages") + 2 if packages >= 0 else -1
        for prefix, is_app in self._rules:
            if len(prefix) <= packages_len:
                break  # the site-packages directory on the path is a longer (exclude) match
            if path.startswith(prefix):
                return is_app
        if packages_len >= 0:
            return False
        return not self.include

    def find(self, depth: int = 1):
        """``(filepath, lineno, qualname, module)`` of the innermost application frame ``depth``
        frames above the caller, or None. ``qualname`` is the code object's qualified name
        (``register.<locals>.books``), ``module`` the frame's module (see :func:`_module_name`)."""
        try:
            frame = sys._getframe(depth + 1)
        except ValueError:
            return None
        cache = self._is_app
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            path = cache.get(filename, _UNSEEN)
            if path is _UNSEEN:
                path = cache[filename] = os.path.abspath(filename) if self.is_app_file(filename) else None
            if path is not None:
                lineno = frame.f_lineno
                template = frame.f_globals.get("__jinja_template__")
                if template is not None:
                    with contextlib.suppress(Exception):  # best-effort template line mapping
                        lineno = template.get_corresponding_lineno(lineno)
                return (
                    path,
                    lineno,
                    getattr(code, "co_qualname", code.co_name),
                    _module_name(frame.f_globals, path),
                )
            frame = frame.f_back
        return None

    def attributes(self, depth: int = 1) -> dict:
        """The seven code attributes (see :func:`code_attributes`) or ``{}``."""
        found = self.find(depth + 1)
        if found is None:
            return {}
        return code_attributes(*found)


def _module_name(frame_globals: dict, path: str) -> str | None:
    """The module's ``__name__``; for the ``__main__`` script, its import name (``python -m
    shop``) or file stem (``python shop.py``), so names do not change with the launch mode."""
    name = frame_globals.get("__name__")
    if name != "__main__":
        return name
    spec = frame_globals.get("__spec__")
    if spec is not None and getattr(spec, "name", None):
        return spec.name
    return os.path.splitext(os.path.basename(path))[0]


def code_attributes(path: str, lineno: int, qualname: str, module: str | None) -> dict:
    """Code attributes under the older and the newer semantic-convention names.

    * newer: ``code.file.path``, ``code.line.number``, ``code.function.name`` fully qualified
      (``<module>.<qualname>``, e.g. ``shop.register.<locals>.books``, as the spec's
      ``com.example.MyHttpService.serveRequest``);
    * older: ``code.filepath``, ``code.lineno``, ``code.function`` the bare function name
      (``books``) and ``code.namespace`` what qualifies it (``shop.register.<locals>``).
    """
    namespace, _, function = qualname.rpartition(".")
    if module:
        namespace = f"{module}.{namespace}" if namespace else module
    attrs = {
        "code.filepath": path,
        "code.lineno": lineno,
        "code.function": function,
        "code.file.path": path,
        "code.line.number": lineno,
        "code.function.name": f"{namespace}.{function}" if namespace else function,
    }
    if namespace:
        attrs["code.namespace"] = namespace
    return attrs


_LOCATOR: CodeLocator | None = None


def locator() -> CodeLocator:
    """The process-wide :class:`CodeLocator` (built on first use)."""
    global _LOCATOR
    if _LOCATOR is None:
        _LOCATOR = CodeLocator()
    return _LOCATOR


class CodeLocationProcessor(SpanProcessor):
    """Adds the code attributes to every CLIENT span when it starts.

    ``on_start`` runs synchronously in the thread that starts the span, so the Python stack is
    the one that issued the DB query, cache call or outbound HTTP request.
    """

    def on_start(self, span, parent_context=None) -> None:
        """Set the code attributes on ``span`` when it is a CLIENT span and an application
        frame is on the stack; other spans are left alone."""
        if span.kind is not SpanKind.CLIENT:
            return
        attrs = locator().attributes(depth=2)
        if attrs:
            span.set_attributes(attrs)

    def on_end(self, span) -> None:
        """Nothing to do when a span ends."""

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered: always True."""
        return True
