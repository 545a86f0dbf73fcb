"""Detector thresholds: defaults, ``tracehound.toml`` and per-service / per-route overrides.

Shape (the TOML file and the ``config`` dict accepted by :func:`tracehound.analyzer.analyze` and the
API are the same)::

    [detectors.n_plus_one_query]        # change a default for every service and route
    min_count = 8

    [detectors.connection_churn]
    enabled = false                     # every detector accepts `enabled`

    [[overrides]]                       # applied in file order, later ones win
    service = "shop"                    # optional: exact service.name, or a glob ("shop-*")
    route = "/reports/<int:year>"       # optional: exact http.route, or a glob ("/admin/*")
    detector = "slow_endpoint"          # optional: one detector; omitted = every detector
    p95_ms = 5000                       # the thresholds to change there

    [worker]                            # the incremental analyzer inside `tracehound serve`
    quiet_seconds = 3

Resolution for a (detector, service, route): the detector's module ``DEFAULTS`` <- ``[detectors.X]``
<- each matching ``[[overrides]]`` in order. Unknown detectors, unknown keys, and values of the wrong
type raise :class:`ConfigError` with a message naming the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the ``tomli`` package (server extra)
    import tomli as tomllib

WORKER_DEFAULTS = {
    # A trace is analysed once a server span arrived and no new span came for this long (s).
    "quiet_seconds": 3.0,
    # Traces without a server span are dropped from the pending set after this long (s).
    "orphan_seconds": 600.0,
    # Seconds between incremental passes.
    "interval_seconds": 1.0,
    # Seconds between runs of the windowed detectors (slow_endpoint, cache_miss_ratio, ...).
    "aggregate_interval_seconds": 30.0,
    # Window (hours) the windowed detectors look at in the worker.
    "aggregate_window_hours": 24.0,
    # At most this many traces per incremental pass (bounds memory and latency).
    "max_traces_per_pass": 20000,
}


class ConfigError(ValueError):
    """Invalid analyzer configuration (unknown detector or key, wrong value type)."""


def _detector_defaults() -> dict[str, dict]:
    from tracehound.analyzer.detectors import DETECTORS

    return {name: {"enabled": True, **module.DEFAULTS} for name, module in DETECTORS.items()}


class AnalyzerConfig:
    """Resolved detector thresholds. Build with :meth:`from_dict`, :meth:`load` or :meth:`default`."""

    def __init__(self, detectors: dict[str, dict], overrides: list[dict], worker: dict):
        self.detectors = detectors
        self.overrides = overrides
        self.worker = worker
        self._cache: dict[tuple, dict] = {}

    @classmethod
    def default(cls) -> AnalyzerConfig:
        """The built-in defaults (each detector module's ``DEFAULTS``)."""
        return cls.from_dict({})

    @classmethod
    def load(cls, path: str | Path | None) -> AnalyzerConfig:
        """Read a ``tracehound.toml``; ``None`` gives the defaults.

        Raises :class:`ConfigError` for a missing file, bad TOML, or invalid content.
        """
        if path is None:
            return cls.default()
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping | None, source: str = "config") -> AnalyzerConfig:
        """Validate a dict shaped like ``tracehound.toml`` (see module docstring)."""
        if isinstance(data, AnalyzerConfig):
            return data
        data = dict(data or {})
        defaults = _detector_defaults()
        unknown = set(data) - {"detectors", "overrides", "worker"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown section(s) {sorted(unknown)}; expected detectors, overrides, worker"
            )
        detectors = {name: dict(values) for name, values in defaults.items()}
        for name, values in (data.get("detectors") or {}).items():
            if name not in defaults:
                raise ConfigError(
                    f"{source}: unknown detector {name!r}; known: {', '.join(sorted(defaults))}"
                )
            detectors[name].update(_check_values(source, f"detectors.{name}", values, defaults[name]))
        overrides = []
        for i, ov in enumerate(data.get("overrides") or []):
            where = f"overrides[{i}]"
            if not isinstance(ov, Mapping):
                raise ConfigError(f"{source}: {where} must be a table")
            ov = dict(ov)
            match = {k: ov.pop(k, None) for k in ("service", "route", "detector")}
            for k, v in match.items():
                if v is not None and not isinstance(v, str):
                    raise ConfigError(f"{source}: {where}.{k} must be a string")
            if match["detector"] is not None and match["detector"] not in defaults:
                raise ConfigError(f"{source}: {where}.detector {match['detector']!r} is not a known detector")
            allowed = defaults[match["detector"]] if match["detector"] else _union(defaults)
            overrides.append({**match, "values": _check_values(source, where, ov, allowed)})
        worker = dict(WORKER_DEFAULTS)
        worker.update(_check_values(source, "worker", data.get("worker") or {}, WORKER_DEFAULTS))
        return cls(detectors, overrides, worker)

    def get(self, detector: str, service: str = "", route: str = "") -> dict:
        """Thresholds of ``detector`` for one service and route (defaults <- file <- overrides)."""
        key = (detector, service, route)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        values = dict(self.detectors[detector])
        for ov in self.overrides:
            if ov["detector"] not in (None, detector):
                continue
            if not _matches(ov["service"], service) or not _matches(ov["route"], route):
                continue
            values.update({k: v for k, v in ov["values"].items() if k in values})
        self._cache[key] = values
        return values

    def loosest(self, detector: str, key: str, lower_is_looser: bool = True):
        """The loosest value of ``key`` across the defaults and every override (to pre-filter in SQL)."""
        candidates = [self.detectors[detector][key]]
        for ov in self.overrides:
            if ov["detector"] in (None, detector) and key in ov["values"]:
                candidates.append(ov["values"][key])
        return min(candidates) if lower_is_looser else max(candidates)

    def any_enabled(self, detector: str) -> bool:
        """True if the detector is enabled by default or for at least one override."""
        if self.detectors[detector]["enabled"]:
            return True
        return any(ov["values"].get("enabled") for ov in self.overrides if ov["detector"] in (None, detector))


def _union(defaults: dict[str, dict]) -> dict:
    merged: dict = {}
    for values in defaults.values():
        merged.update(values)
    return merged


def _matches(pattern: str | None, value: str) -> bool:
    return pattern is None or pattern == value or fnmatch.fnmatchcase(value, pattern)


def _check_values(source: str, where: str, values, allowed: Mapping) -> dict:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: {where} must be a table of key = value")
    out = {}
    for k, v in values.items():
        if k not in allowed:
            raise ConfigError(
                f"{source}: {where}.{k} is not a known setting; known: {', '.join(sorted(allowed))}"
            )
        expected = allowed[k]
        if isinstance(expected, bool):
            ok = isinstance(v, bool)
        elif isinstance(expected, (int, float)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif isinstance(expected, list):
            ok = isinstance(v, list)
        else:
            ok = isinstance(v, type(expected))
        if not ok:
            raise ConfigError(f"{source}: {where}.{k} must be {type(expected).__name__}, got {v!r}")
        out[k] = v
    return out
