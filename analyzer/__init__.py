"""tracehound.analyzer: detectors over the span store that produce findings.

Heavy dependencies (duckdb, pyarrow) are imported only when :func:`analyze` runs.
"""

from __future__ import annotations


def analyze(con, since=None, until=None, config=None) -> list[dict]:
    """Batch re-analysis of a window; see :func:`tracehound.analyzer.engine.analyze`."""
    from tracehound.analyzer.engine import analyze as _analyze

    return _analyze(con, since=since, until=until, config=config)


__all__ = ["analyze"]
