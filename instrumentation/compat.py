"""Which upstream instrumentations apply to the installed libraries, and what tracehound does
about the ones that refuse (shared by the start-up hook and ``tracehound doctor``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts
from opentelemetry.util._importlib_metadata import entry_points

#: Refused instrumentations that tracehound instruments anyway, because their upstream code is
#: known to work with the newer library (tested: SQLAlchemy 2.0 and 2.1).
FORCED = {"sqlalchemy"}

#: What is lost when an instrumentation is refused and not forced (named in the warning).
LOSSES = {
    "flask": "no server spans: no traces at all for HTTP requests",
    "sqlalchemy": "no SQL spans: N+1, repeated and slow queries go undetected",
    "redis": "no redis spans: raw redis cache hits/misses go undetected",
    "jinja2": "no template render spans",
    "requests": "no outbound HTTP spans for requests: N+1/consecutive HTTP calls go undetected",
    "httpx": "no outbound HTTP spans for httpx: N+1/consecutive HTTP calls go undetected",
    "psycopg": "no spans for raw psycopg queries",
    "pymysql": "no spans for raw PyMySQL queries",
    "sqlite3": "no spans for raw sqlite3 queries",
}


@dataclass
class InstrumentationStatus:
    """One ``opentelemetry_instrumentor`` entry point and its fate in this environment.

    ``state`` is ``active`` (library installed and accepted), ``forced`` (refused upstream,
    instrumented by tracehound), ``refused`` (refused and NOT traced), ``disabled``
    (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``) or ``absent`` (library not installed).
    """

    name: str
    distribution: str
    version: str
    library: str | None
    library_version: str | None
    required: str | None
    state: str

    def describe_refusal(self) -> str:
        """One line: which instrumentation requires which library range, and what is installed
        (e.g. "opentelemetry-instrumentation-sqlalchemy 0.66b1 requires sqlalchemy<2.1, but
        sqlalchemy 2.1.9 is installed")."""
        return (
            f"{self.distribution} {self.version} requires {self.required}, "
            f"but {self.library} {self.library_version} is installed"
        )


def disabled_names() -> set[str]:
    """Names listed in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``."""
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {x.strip() for x in raw.split(",") if x.strip()}


def _split_found(found: str | None) -> tuple[str | None, str | None]:
    if not found:
        return None, None
    name, _, version = found.partition(" ")
    return name, version or None


def instrumentation_statuses() -> list[InstrumentationStatus]:
    """Status of every installed instrumentation, sorted by name."""
    disabled = disabled_names()
    result = []
    seen = set()
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        conflict = get_dist_dependency_conflicts(dist) if dist is not None else None
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        dist_version = dist.version if dist is not None else "?"
        library, library_version = _split_found(conflict.found if conflict else None)
        required = _clean_requirement(conflict.required) if conflict else None
        if ep.name in disabled or "*" in disabled:
            state = "disabled"
        elif conflict is None:
            state = "active"
        elif not conflict.found and not conflict.found_any:
            state = "absent"
        elif ep.name in FORCED:
            state = "forced"
        else:
            state = "refused"
        if conflict is None:
            library, library_version = _accepted_library(dist)
        result.append(
            InstrumentationStatus(ep.name, dist_name, dist_version, library, library_version, required, state)
        )
    return sorted(result, key=lambda s: s.name)


def _clean_requirement(required) -> str | None:
    """``'sqlalchemy<2.1.0,>=1.0.0; extra == "instruments"'`` -> ``'sqlalchemy>=1.0.0,<2.1.0'``."""
    if not required:
        return required
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = required if isinstance(required, Requirement) else Requirement(str(required))
    except InvalidRequirement:
        return str(required)
    return req.name + ",".join(sorted(str(s) for s in req.specifier))


def _accepted_library(dist) -> tuple[str | None, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    for dep in (dist.requires or []) if dist is not None else []:
        if "instruments" not in dep:
            continue
        req = Requirement(dep)
        if req.marker and req.marker.evaluate({"extra": "instruments"}):
            try:
                return req.name, version(req.name)
            except PackageNotFoundError:
                return req.name, None
    return None, None


def entry_point_named(name: str):
    """The ``opentelemetry_instrumentor`` entry point called ``name``, or None."""
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if ep.name == name:
            return ep
    return None
