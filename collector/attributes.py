"""Attribute maps for the columnar decoder: flat key/value/offset lists, limits and messages.

Limits (documented in the README, section "Collector"), applied per attribute map (span, resource,
scope, event, link):

* :data:`MAX_ATTRIBUTES`: the first ones are kept; the rest are dropped and added to that map's
  ``DroppedAttributesCount`` (the rule of the OTel SDK's attribute count limit).
* :data:`MAX_VALUE_CHARS` per value (after rendering to text): longer values are cut, as the SDK's
  attribute value length limit does.
* A repeated key (the OTLP spec forbids it; DuckDB MAPs refuse it): the first value is kept, the
  repeats count as dropped.

Each case adds a message (at most :data:`MAX_MESSAGES` are spelled out).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .anyvalue import render_value

#: Attributes kept per attribute map; the rest are counted as dropped (OTel SDK default is 128).
MAX_ATTRIBUTES = 1024
#: Longest attribute value kept, in characters of its text rendering (64 Ki characters).
MAX_VALUE_CHARS = 65536
#: How many individual problems are spelled out in ``partial_success.error_message``.
MAX_MESSAGES = 5

_STR = pa.string()
_I32 = pa.int32()
_MAP = pa.map_(pa.string(), pa.string())


class Problems:
    """Counts rejected spans and keeps the first :data:`MAX_MESSAGES` messages (the rest counted)."""

    __slots__ = ("rejected", "messages", "more")

    def __init__(self):
        self.rejected = 0
        self.messages: list[str] = []
        self.more = 0

    def add(self, message: str) -> None:
        """Record one problem (a rejection is counted separately in ``rejected``)."""
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)
        else:
            self.more += 1


def _describe(where: tuple) -> str:
    label, owner = where
    return f"{label} {(owner if isinstance(owner, str) else owner.name)!r}"


class MapBuilder:
    """Flat keys / values / offsets for one MAP(VARCHAR, VARCHAR) column, applying the limits."""

    __slots__ = ("keys", "values", "offsets", "dropped")

    def __init__(self):
        self.keys: list[str] = []
        self.values: list[str] = []
        self.offsets: list[int] = [0]
        self.dropped: list[int] = []  # attributes dropped per map (limit, duplicate keys)

    def add(self, kvs, problems: Problems, where: tuple) -> None:
        """Append one map from a repeated ``KeyValue`` field; ``where`` is ``(label, owner)``."""
        keys = [kv.key for kv in kvs]
        n = len(keys)
        if n > MAX_ATTRIBUTES or len(set(keys)) != n:
            self._add_slow(kvs, problems, where)
            return
        self.keys += keys
        self.values += [kv.value.string_value or render_value(kv.value) for kv in kvs]
        self.offsets.append(len(self.keys))
        self.dropped.append(0)

    def _add_slow(self, kvs, problems: Problems, where) -> None:
        seen: dict[str, str] = {}
        for kv in kvs:
            if kv.key not in seen and len(seen) < MAX_ATTRIBUTES:
                seen[kv.key] = render_value(kv.value)
        dropped = len(kvs) - len(seen)
        if len(kvs) > MAX_ATTRIBUTES:
            problems.add(
                f"{_describe(where)}: kept {len(seen)} of {len(kvs)} attributes (limit {MAX_ATTRIBUTES})"
            )
        else:
            problems.add(f"{_describe(where)}: {dropped} repeated attribute keys dropped (first value kept)")
        self.keys += seen.keys()
        self.values += seen.values()
        self.offsets.append(len(self.keys))
        self.dropped.append(dropped)

    def array(self, problems: Problems, what: str) -> pa.MapArray:
        """The Arrow map column; cuts values over :data:`MAX_VALUE_CHARS` (with a message)."""
        values = pa.array(self.values, _STR)
        if len(values):
            lengths = pc.utf8_length(values)
            if pc.max(lengths).as_py() > MAX_VALUE_CHARS:
                long = pc.greater(lengths, MAX_VALUE_CHARS)
                for i in pc.indices_nonzero(long).to_pylist():
                    problems.add(
                        f"{what}: attribute {self.keys[i]!r} value of {lengths[i].as_py()} chars "
                        f"cut to {MAX_VALUE_CHARS} (limit)"
                    )
                values = pc.if_else(long, pc.utf8_slice_codeunits(values, 0, MAX_VALUE_CHARS), values)
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, _I32), pa.array(self.keys, _STR), values, type=_MAP
        )
