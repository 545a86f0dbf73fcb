"""Shared test helpers: free ports and the real local services (PostgreSQL, MariaDB, Redis).

Tests of instrumentation and caching use real services. When one is unreachable the test skips
with the reason, except with ``CI=true``, where it fails: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import socket

import pytest

CI = os.environ.get("CI", "").lower() == "true"

SERVICES = {
    "postgresql": ("127.0.0.1", 5432, "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": ("127.0.0.1", 3306, "mysql+pymysql://root@127.0.0.1:3306/test"),
    "redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/0"),
}


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (never the defaults 4317/4318/8000: tests run in parallel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_service(name: str) -> str:
    """Return the service's URL, or skip (fail under CI=true) when it does not answer."""
    host, port, url = SERVICES[name]
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        message = f"{name} is not reachable on {host}:{port}; start it (see .ci/run) to run this test"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_url() -> str:
    return require_service("postgresql")


@pytest.fixture
def mariadb_url() -> str:
    return require_service("mariadb")


@pytest.fixture
def redis_url() -> str:
    return require_service("redis")
