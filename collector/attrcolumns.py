"""Attribute columns shared by the fast decoders: each distinct encoded ``KeyValue`` rendered once.

Attributes repeat a lot (``db.system``, ``db.statement``, ``net.peer.name`` ...), so the decoders
hand over each request's *distinct* encoded ``KeyValue`` s and, per span, their positions in that
list. Each distinct one is decoded with the real ``KeyValue`` class (so invalid UTF-8 and truncation
still raise ``DecodeError``) and rendered once, then found again by a dict lookup (a bounded cache
across requests); the ``SpanAttributes`` column is built with ``take`` over the distinct keys and
values, dictionary-encoded over the distinct attribute lists. Requests that need the limit rules
raise :class:`NeedsSlowPath`: :func:`~.decode.decode_request` applies and explains them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from .anyvalue import render_value
from .attributes import MAX_ATTRIBUTES, MAX_VALUE_CHARS, Problems
from .batch import ResourceScopeColumns

#: Largest (spans x distinct keys) table for the repeated-key check by ``bincount``.
_BINCOUNT_MAX = 1 << 22

#: Encoded ``KeyValue`` -> (key, rendered value); emptied when it reaches this many entries.
KV_CACHE_MAX = 65536
_kv_cache: dict[bytes, tuple[str, str]] = {}
_parse_kv = KeyValue.FromString


class Interner(dict):
    """bytes -> first-seen index (``interner[b]`` adds unseen keys)."""

    __slots__ = ()

    def __missing__(self, key):
        index = self[key] = len(self)
        return index


class NeedsSlowPath(Exception):
    """A limit rule applies: decode the request with :func:`~.decode.decode_request` instead."""


def distinct_kvs(encoded: list[bytes]) -> tuple[list[str], list[str]]:
    """Keys and rendered values of distinct encoded ``KeyValue`` s (``DecodeError`` if invalid)."""
    cache = _kv_cache
    if len(cache) + len(encoded) > KV_CACHE_MAX:
        cache.clear()
    keys, values = [], []
    for b in encoded:
        hit = cache.get(b)
        if hit is None:
            kv = _parse_kv(b)
            hit = cache[b] = (kv.key, render_value(kv.value))
        keys.append(hit[0])
        values.append(hit[1])
    return keys, values


def span_attributes(
    distinct: list[bytes], idx: np.ndarray, n_attrs: np.ndarray, rows: tuple | None = None
) -> pa.DictionaryArray:
    """The ``SpanAttributes`` column (``NeedsSlowPath`` when a limit rule applies).

    ``distinct``: the request's distinct encoded ``KeyValue`` s; ``idx`` (int32): each span's
    attributes as positions in ``distinct``, span after span; ``n_attrs`` (int32): attributes per
    span. Identical attribute lists (same encoded KeyValues in the same order) share one dictionary
    entry, so DuckDB converts and checks each distinct map once; ``rows`` = ``(row_ids, first_rows)``
    when the caller already grouped them (the C decoder does), else they are grouped here.
    """
    keys, values = distinct_kvs(distinct)
    if max(map(len, values), default=0) > MAX_VALUE_CHARS:
        raise NeedsSlowPath
    if n_attrs.size and int(n_attrs.max()) > MAX_ATTRIBUTES:
        raise NeedsSlowPath
    offsets = np.zeros(n_attrs.size + 1, np.int32)
    np.cumsum(n_attrs, out=offsets[1:])
    row_ids, first_rows = rows if rows is not None else group_rows(idx, offsets)
    lengths = n_attrs[first_rows]
    d_offsets = np.zeros(len(first_rows) + 1, np.int32)
    np.cumsum(lengths, out=d_offsets[1:])
    # the entries of each group's representative row, group after group
    starts = offsets[first_rows]
    take = np.repeat(starts - d_offsets[:-1], lengths) + np.arange(d_offsets[-1], dtype=np.int64)
    d_idx = idx[take]
    if d_idx.size:
        # A repeated key in one span (forbidden by OTLP, refused by DuckDB MAPs): slow path.
        key_ids = Interner()
        key_of_kv = np.fromiter(map(key_ids.__getitem__, keys), np.int64, len(keys))
        n_keys = len(key_ids)
        pairs = np.repeat(np.arange(len(first_rows), dtype=np.int64), lengths) * n_keys + key_of_kv[d_idx]
        if len(first_rows) * n_keys <= _BINCOUNT_MAX:
            repeated = int(np.bincount(pairs).max()) > 1
        else:
            repeated = np.unique(pairs).size != pairs.size
        if repeated:
            raise NeedsSlowPath
    idx_a = pa.array(d_idx, pa.int32())
    maps = pa.MapArray.from_arrays(
        pa.array(d_offsets, pa.int32()),
        pa.array(keys, pa.string()).take(idx_a),
        pa.array(values, pa.string()).take(idx_a),
    )
    return pa.DictionaryArray.from_arrays(pa.array(row_ids, pa.int32()), maps)


def group_rows(idx: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row id per span, one span per row id) for equal attribute lists (``idx[offsets[i]:offsets[i+1]]``)."""
    row_bytes = idx.tobytes()
    bounds = (offsets * 4).tolist()
    distinct = Interner()
    row_ids = np.fromiter(
        map(distinct.__getitem__, map(row_bytes.__getitem__, map(slice, bounds[:-1], bounds[1:]))),
        np.int32,
        len(offsets) - 1,
    )
    first_rows = np.zeros(len(distinct), np.int64)
    first_rows[row_ids] = np.arange(len(offsets) - 1)  # any row of a group will do: they are equal
    return row_ids, first_rows


def add_resource(rc: ResourceScopeColumns, encoded: bytes, schema_url: str, problems: Problems) -> int:
    """Append an encoded ``Resource`` to ``rc``; returns its index (``DecodeError`` if invalid)."""
    resource = Resource.FromString(encoded)
    service = "unknown_service"
    for kv in resource.attributes:
        if kv.key == "service.name":
            service = render_value(kv.value)
            break
    rc.res_attrs.add(resource.attributes, problems, ("resource of", service))
    rc.res_service.append(service)
    rc.res_schema.append(schema_url)
    rc.res_dropped.append(resource.dropped_attributes_count)
    return len(rc.res_service) - 1


def add_scope(rc: ResourceScopeColumns, encoded: bytes, schema_url: str, problems: Problems) -> int:
    """Append an encoded ``InstrumentationScope`` to ``rc``; returns its index."""
    scope = InstrumentationScope.FromString(encoded)
    rc.sc_name.append(scope.name)
    rc.sc_version.append(scope.version)
    rc.sc_schema.append(schema_url)
    rc.scope_attrs.add(scope.attributes, problems, ("scope", scope))
    rc.sc_dropped.append(scope.dropped_attributes_count)
    return len(rc.sc_name) - 1
