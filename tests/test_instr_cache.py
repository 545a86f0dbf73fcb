"""Flask-Caching and redis-py cache spans from a real Flask app under ``opentelemetry-instrument``
(SimpleCache, FileSystemCache, RedisCache backends; raw redis GET/MGET), exported to a real
tracehound server."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.instr_support import (
    APP_DIR,
    SHOP,
    app_env,
    children_of,
    code_location,
    get,
    instrument,
    mark_line,
    running_app,
    server_span,
    trace_server,
)


def _cache_spans(spans, root):
    return [s for s in children_of(spans, root) if s["name"].startswith("cache.")]


def _run(tmp_path, backend: str, paths: list[str], **env_extra) -> list[dict]:
    port = free_port()
    with trace_server(tmp_path) as server:
        env = app_env(
            server.otlp_http_endpoint,
            SHOP_DB_URL=f"sqlite:///{tmp_path}/shop.sqlite",
            SHOP_CACHE_TYPE=backend,
            SHOP_CACHE_DIR=str(tmp_path / "cache"),
            **env_extra,
        )
        cmd = instrument("flask", "--app", "shop", "run", "--no-reload", "--port", str(port))
        with running_app(cmd, env, APP_DIR, port):
            for path in paths:
                get(f"http://127.0.0.1:{port}{path}")
        return server.spans(min_count=30)


def _check_flask_caching(spans: list[dict], backend: str) -> None:
    root = server_span(spans, "/cache/<int:n>")
    ops = _cache_spans(spans, root)
    summary = [(s["name"], s["attrs"]["cache.key"], s["attrs"].get("cache.hit")) for s in ops]
    memo = "memoize:shop.book_title"
    assert summary == [
        ("cache.get", "book:{n}", "false"),
        ("cache.set", "book:{n}", None),
        ("cache.add", "book:{n}", None),
        ("cache.get_many", "book:{n}", "false"),
        ("cache.delete", "book:{n}", None),
        ("cache.get", memo, "false"),  # memoize: first call misses; its _memver reads are not spans
        ("cache.set", memo, None),
        ("cache.get", memo, "true"),
    ], summary
    for span in ops:
        a = span["attrs"]
        assert span["kind"] == "Client"
        assert a["cache.backend"] == backend
        assert a["cache.operation"] == span["name"].removeprefix("cache.")
        assert code_location(span)[0] == str(SHOP)
    get_, set_, _add, many, delete, memo_get, _memo_set, memo_hit = ops
    assert code_location(get_)[1:] == (str(mark_line("cache_get")), "shop.register.<locals>.cache_ops")
    assert code_location(set_)[1] == str(mark_line("cache_set"))
    assert code_location(many)[1] == str(mark_line("cache_get_many"))
    assert code_location(delete)[1] == str(mark_line("cache_delete"))
    assert code_location(memo_get)[1] == str(mark_line("memoize"))
    assert set_["attrs"]["cache.item_size"] == "7"  # "title 7"
    assert (many["attrs"]["tracehound.cache.hit_count"], many["attrs"]["tracehound.cache.miss_count"]) == (
        "1",
        "1",
    )
    assert memo_hit["attrs"]["tracehound.cache.decorator"] == "memoize"
    assert not [s for s in spans if "memver" in s["attrs"].get("cache.key", "")]

    cached = [r for r in spans if r["kind"] == "Server" and r["attrs"].get("http.route") == "/cached"]
    assert len(cached) == 2
    lookups = [_cache_spans(spans, r)[0] for r in cached]
    assert [(s["name"], s["attrs"]["cache.key"], s["attrs"]["cache.hit"]) for s in lookups] == [
        ("cache.get", "view//cached", "false"),
        ("cache.get", "view//cached", "true"),
    ]
    for lookup in lookups:
        assert lookup["attrs"]["tracehound.cache.decorator"] == "cached"
        assert code_location(lookup)[:2] == (str(SHOP), str(mark_line("cached_view")))


PATHS = ["/cache/7", "/cached", "/cached"]


def test_flask_caching_simplecache(tmp_path):
    _check_flask_caching(_run(tmp_path, "SimpleCache", PATHS), "SimpleCache")


def test_flask_caching_filesystem(tmp_path):
    _check_flask_caching(_run(tmp_path, "FileSystemCache", PATHS), "FileSystemCache")


@pytest.mark.services
def test_flask_caching_redis_and_raw_redis(tmp_path, redis_url):
    spans = _run(tmp_path, "RedisCache", [*PATHS, "/redis"], SHOP_REDIS_URL=redis_url)
    _check_flask_caching(spans, "RedisCache")
    # redis calls made by Flask-Caching are children of the cache span and carry no cache.hit:
    # the hit is counted once, on the cache.* span, which also gets the reply size.
    cache_ids = {s["span_id"] for s in spans if s["name"].startswith("cache.")}
    inner = [s for s in spans if s["parent"] in cache_ids]
    assert inner and all("cache.hit" not in s["attrs"] for s in inner)
    memo_hit = [s for s in spans if s["attrs"].get("cache.key") == "memoize:shop.book_title"][-1]
    assert int(memo_hit["attrs"]["cache.item_size"]) > 0

    root = server_span(spans, "/redis")
    raw = [s for s in children_of(spans, root) if s["name"] in ("GET", "MGET")]
    assert [(s["name"], s["attrs"].get("cache.hit")) for s in raw] == [
        ("GET", "true"),
        ("GET", "false"),
        ("MGET", "false"),
    ]
    assert raw[0]["attrs"]["cache.item_size"] == "5"
    assert code_location(raw[0])[:2] == (str(SHOP), str(mark_line("redis_get")))
    assert (
        raw[2]["attrs"]["tracehound.cache.hit_count"],
        raw[2]["attrs"]["tracehound.cache.miss_count"],
    ) == (
        "1",
        "1",
    )
