"""tracehound instrumentation settings, read once from ``TRACEHOUND_*`` environment variables.

=============================  ===========================================================
``TRACEHOUND_CODE_INCLUDE``    path prefixes (``os.pathsep`` or comma separated) whose frames
                               count as application code. When set, ONLY those frames count;
                               the longest matching include/exclude prefix decides, so a
                               venv's site-packages inside an included folder stays excluded.
``TRACEHOUND_CODE_EXCLUDE``    path prefixes never counted as application code, on top of the
                               defaults (standard library, site-packages, tracehound,
                               SQLAlchemy, Flask, Werkzeug, OpenTelemetry).
``TRACEHOUND_PARAMS_SALT``     salt of ``tracehound.db.params_hash``. Default: 16 random bytes
                               per process (hashes compare within one process, which is all the
                               analyzer needs: it compares queries of one trace).
``TRACEHOUND_CACHE_KEYS``      ``normalise`` (default: numbers, UUIDs and long opaque tokens
                               become ``{n}``, ``{uuid}``, ``{hash}``, free-text segments
                               ``{s}``, query values ``{v}``) or ``hash`` (the normalised key is
                               hashed too, for keys that embed lowercase user names).
=============================  ===========================================================
"""

from __future__ import annotations

import os
import re


def env_prefixes(name: str) -> tuple[str, ...]:
    """Absolute path prefixes from env var ``name`` (``os.pathsep`` or ``,`` separated)."""
    raw = os.environ.get(name, "")
    parts = [p.strip() for p in re.split(rf"[,{re.escape(os.pathsep)}]", raw)]
    return tuple(os.path.abspath(os.path.expanduser(p)) for p in parts if p)


def params_salt() -> bytes:
    """Salt for parameter hashes: ``TRACEHOUND_PARAMS_SALT`` or 16 random bytes per process."""
    configured = os.environ.get("TRACEHOUND_PARAMS_SALT")
    if configured:
        return configured.encode("utf-8")[:64]
    return os.urandom(16)


def cache_key_mode() -> str:
    """``normalise`` or ``hash`` (``TRACEHOUND_CACHE_KEYS``); anything else means ``normalise``."""
    mode = os.environ.get("TRACEHOUND_CACHE_KEYS", "normalise").strip().lower()
    return "hash" if mode == "hash" else "normalise"
