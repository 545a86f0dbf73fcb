"""Normalisation and fingerprints (pure functions)."""

from tracehound.analyzer.normalize import (
    finding_id,
    fingerprint,
    normalize_cache_key,
    normalize_sql,
    normalize_url,
    sql_has_literals,
    sql_is_batch,
)


def test_sql_literals_and_params_become_placeholders():
    assert normalize_sql("SELECT * FROM book WHERE id = 7 AND name = 'O''Brien'  LIMIT 10;") == (
        "SELECT * FROM book WHERE id = ? AND name = ? LIMIT ?"
    )
    for param in ("%s", "%(pk_1)s", "$1", ":pk", "@p1", "?"):
        assert normalize_sql(f"SELECT a FROM t WHERE id = {param}") == "SELECT a FROM t WHERE id = ?"


def test_sql_keeps_identifiers_and_casts():
    assert (
        normalize_sql('SELECT t1.a, "book_2"."x"::int FROM book_2 t1')
        == 'SELECT t1.a, "book_2"."x"::int FROM book_2 t1'
    )


def test_sql_in_lists_collapse_after_literals():
    a = normalize_sql("SELECT * FROM r WHERE book_id IN (1, 2, 3)")
    b = normalize_sql("SELECT * FROM r WHERE book_id IN ( %(p_1)s, %(p_2)s )")
    assert a == b == "SELECT * FROM r WHERE book_id IN (?)"
    assert (
        normalize_sql("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')")
        == "INSERT INTO t (a, b) VALUES (?, ?)"
    )


def test_sql_flags():
    assert sql_has_literals("SELECT * FROM t WHERE id = 3")
    assert not sql_has_literals("SELECT * FROM t WHERE id = %s")
    assert sql_is_batch("SELECT * FROM t WHERE id IN (%(a)s, %(b)s)")
    assert sql_is_batch("SELECT * FROM t WHERE id IN (__[POSTCOMPILE_id_1])")
    assert not sql_is_batch("SELECT * FROM t WHERE id IN (%(a)s)")


def test_url_normalisation():
    assert normalize_url(
        "get", "https://API.x.io:8443/users/123/o/550e8400-e29b-41d4-a716-446655440000/deadbeef12?q=1#f"
    ) == ("GET api.x.io:8443/users/{n}/o/{uuid}/{hex}")
    assert normalize_url("GET", "http://h/1001/weather.json") == "GET h/{n}/weather.json"
    assert normalize_url("GET", "http://h/api/v2/books") == "GET h/api/v2/books"


def test_cache_keys():
    assert normalize_cache_key("GET book:12") == "GET book:{n}"
    assert normalize_cache_key("get user:{n}") == "get user:{n}"


def test_fingerprint_is_stable():
    fp = fingerprint("n_plus_one_query", "shop", "/books", "SELECT ?")
    assert fp == fingerprint("n_plus_one_query", "shop", "/books", "SELECT ?")
    assert fp != fingerprint("n_plus_one_query", "shop", "/book", "SELECT ?")
    assert finding_id(fp) == fp[:16] and len(fp) == 64
