"""The analyzer's configuration over the API: ``GET /api/config`` and ``POST /api/analyze``.

Thresholds come from each detector module's ``DEFAULTS``, then ``tracehound.toml`` (``--config`` /
``TRACEHOUND_CONFIG``, else ``./tracehound.toml`` when present, the same file the analyzer worker
reads), then, for ``POST /api/analyze`` only, the overrides in the request body. See
:mod:`tracehound.analyzer.config` for the shape and the resolution order.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .models import ErrorBody, Finding, UtcDateTime
from .params import OptionalIso
from .query_base import BadRequest, _utc_naive
from .routes_json import ERRORS

router = APIRouter(
    prefix="/api",
    tags=["analyzer"],
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "Another analysis is writing; retry."}},
)

#: How long ``POST /api/analyze`` waits for another re-analysis started over the API (s) before 409.
ANALYZE_WAIT_S = 30.0
#: Attempts when DuckDB reports a write-write conflict with the analyzer worker, and the pause between.
CONFLICT_RETRIES, CONFLICT_PAUSE_S = 3, 0.5


class Override(BaseModel):
    """One ``[[overrides]]`` entry: where it applies (exact name or glob; null = everywhere) and the values."""

    service: str | None
    route: str | None
    detector: str | None = Field(description="null = every detector that has these settings")
    values: dict[str, Any]


class AnalyzerConfigOut(BaseModel):
    """The configuration the analyzer runs with (``GET /api/config``)."""

    source: str | None = Field(description="The tracehound.toml read, or null for the built-in defaults.")
    detectors: dict[str, dict[str, Any]] = Field(
        description="Per detector, its thresholds after [detectors.X] of the file (defaults otherwise)."
    )
    overrides: list[Override] = Field(description="Per-service/route overrides, in order; later ones win.")
    worker: dict[str, Any] = Field(description="The incremental worker's timings ([worker]).")


class AnalyzeRequest(BaseModel):
    """Body of ``POST /api/analyze``: the ``config`` shape of ``tracehound.analyzer.analyze`` (the
    tracehound.toml shape: ``detectors``, ``overrides``) plus the window."""

    model_config = ConfigDict(extra="allow")  # unknown sections reach the analyzer's ConfigError (400)

    detectors: dict[str, dict[str, Any]] | None = Field(
        None, description='Per detector defaults, e.g. {"n_plus_one_query": {"min_count": 8}}.'
    )
    overrides: list[dict[str, Any]] | None = Field(
        None,
        description='e.g. [{"route": "/books", "detector": "n_plus_one_query", "min_total_ms": 10}]; '
        "applied after the file's overrides.",
    )
    since: OptionalIso = Field(
        None, description="Re-analyse traces starting at or after this time (ISO 8601)."
    )
    until: OptionalIso = Field(None, description="... and before this time (exclusive).")
    use_file_config: bool = Field(
        True,
        description="Layer the body over the server's tracehound.toml (false: over the built-in defaults).",
    )


class AnalyzeResult(BaseModel):
    """What ``POST /api/analyze`` re-analysed and the findings that have occurrences in the window."""

    since: UtcDateTime | None
    until: UtcDateTime | None
    seconds: float = Field(description="Wall-clock time of the re-analysis.")
    findings_count: int
    findings: list[Finding] = Field(description="By impact_ms, descending.")
    findings_url: str = Field(description="The HTML findings list over the same window.")


def config_source(settings) -> Path | None:
    """The tracehound.toml the analyzer uses: ``settings.config_file``, else ``./tracehound.toml``."""
    path = getattr(settings, "config_file", None)
    if path is None and Path("tracehound.toml").is_file():
        path = Path("tracehound.toml")
    return path


def _file_config(settings):
    from tracehound.analyzer.config import AnalyzerConfig, ConfigError

    path = config_source(settings)
    try:
        return path, AnalyzerConfig.load(path)
    except ConfigError as exc:
        raise BadRequest(f"the server's configuration is invalid: {exc}") from exc


def as_dict(cfg) -> dict:
    """An :class:`~tracehound.analyzer.config.AnalyzerConfig` back in the tracehound.toml shape."""
    overrides = [
        {**{k: ov[k] for k in ("service", "route", "detector") if ov[k] is not None}, **ov["values"]}
        for ov in cfg.overrides
    ]
    return {
        "detectors": {k: dict(v) for k, v in cfg.detectors.items()},
        "overrides": overrides,
        "worker": dict(cfg.worker),
    }


@router.get("/config", response_model=AnalyzerConfigOut)
def get_config(request: Request):
    """The effective analyzer configuration: every detector's thresholds (defaults and the file's
    ``[detectors.X]``), the per-service/route ``[[overrides]]`` in force, and the worker timings.
    400 when the server's tracehound.toml is invalid."""
    path, cfg = _file_config(request.app.state.settings)
    return {
        "source": str(path) if path is not None else None,
        "detectors": cfg.detectors,
        "overrides": cfg.overrides,
        "worker": cfg.worker,
    }


def _lock(request: Request) -> threading.Lock:
    state = request.app.state
    if not hasattr(state, "analyze_lock"):
        state.analyze_lock = threading.Lock()
    return state.analyze_lock


@router.post("/analyze", response_model=AnalyzeResult)
def analyze(request: Request, body: AnalyzeRequest, lock: Annotated[threading.Lock, Depends(_lock)]):
    """Re-analyse the traces in ``[since, until)`` (default: all) with the body's thresholds layered
    over the server's configuration, and return the findings with occurrences in that window.

    This rewrites those traces' summaries and occurrences and recomputes the findings they touch
    (``tracehound.analyzer.analyze``). The running analyzer worker keeps its own configuration: it
    applies it to new traces, and its windowed detectors (slow_endpoint, slow_query, ...) re-run over
    the last 24 h every 30 s; put lasting thresholds in tracehound.toml.

    Errors: 400 with the analyzer's ConfigError message for an unknown detector/key or a wrong value
    type, or ``since`` after ``until``; 422 for a malformed body; 409 when another re-analysis keeps
    running or the worker keeps writing the same rows (retry in a few seconds).
    """
    import duckdb
    from tracehound.analyzer import analyze as run_analysis
    from tracehound.analyzer.config import AnalyzerConfig, ConfigError

    since, until = _utc_naive(body.since), _utc_naive(body.until)
    if since is not None and until is not None and since >= until:
        raise BadRequest(f"since ({since.isoformat()}Z) must be before until ({until.isoformat()}Z)")
    extra = dict(body.model_extra or {})
    config = as_dict(_file_config(request.app.state.settings)[1]) if body.use_file_config else {}
    for name, values in (body.detectors or {}).items():
        config.setdefault("detectors", {}).setdefault(name, {}).update(values)
    config["overrides"] = [*config.get("overrides", []), *(body.overrides or [])]
    config.update(extra)
    try:
        cfg = AnalyzerConfig.from_dict(config, source="request body")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from exc
    if not lock.acquire(timeout=ANALYZE_WAIT_S):
        raise HTTPException(
            409, f"another re-analysis has been running for over {ANALYZE_WAIT_S:.0f} s; retry later"
        )
    try:
        started = time.monotonic()
        for attempt in range(CONFLICT_RETRIES):
            try:
                findings = run_analysis(request.app.state.con, since=since, until=until, config=cfg)
                break
            except duckdb.TransactionException as exc:
                if attempt == CONFLICT_RETRIES - 1:
                    raise HTTPException(
                        409, f"the analyzer worker is writing the same rows ({exc}); retry in a few seconds"
                    ) from exc
                time.sleep(CONFLICT_PAUSE_S)
        seconds = time.monotonic() - started
    finally:
        lock.release()
    window = {k: v.isoformat() + "Z" for k, v in (("since", since), ("until", until)) if v is not None}
    return {
        "since": since,
        "until": until,
        "seconds": seconds,
        "findings_count": len(findings),
        "findings": findings,
        "findings_url": "/findings" + ("?" + urlencode(window) if window else ""),
    }
