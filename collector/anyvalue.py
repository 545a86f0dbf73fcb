"""OTLP ``AnyValue`` -> text, the way pdata's ``Value.AsString()`` renders it.

* string: as is; bool: ``true`` / ``false``; int: decimal.
* double: the ECMAScript number-to-string form Go's JSON encoder and pdata use: shortest
  round-trip digits, positional for 1e-6 <= |x| < 1e21 (``2``, ``0.5``, ``1e+21``, ``1.5e-7``).
  Non-finite values (which JSON cannot hold) become ``NaN``, ``+Inf``, ``-Inf``.
* bytes: standard base64.
* array and kvlist: compact JSON text (``[1,"a",true]``, ``{"k":"v"}``); nested bytes as base64
  strings, nested non-finite doubles as the strings above. Unlike Go, ``<``, ``>`` and ``&`` are not
  escaped, so the text stays readable; it parses to the same JSON value.
* an empty (unset) value: ``''``.
"""

from __future__ import annotations

import base64
import json
import math
from decimal import Decimal

_dumps_str = json.JSONEncoder(ensure_ascii=False).encode


def format_double(value: float) -> str:
    """A float as ECMAScript/pdata text (see the module docstring)."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        text = format(Decimal(repr(value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    text = repr(value)  # Python uses exponent form in this range: '1e-07', '1.5e+22'
    mantissa, exponent = text.split("e")
    sign = exponent[0]
    digits = exponent[1:].lstrip("0") or "0"
    return f"{mantissa}e{sign}{digits}"


def _json(value) -> str:
    which = value.WhichOneof("value")
    if which == "string_value":
        return _dumps_str(value.string_value)
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        d = value.double_value
        return format_double(d) if math.isfinite(d) else f'"{format_double(d)}"'
    if which == "bytes_value":
        return '"' + base64.b64encode(value.bytes_value).decode("ascii") + '"'
    if which == "array_value":
        return "[" + ",".join(_json(v) for v in value.array_value.values) + "]"
    if which == "kvlist_value":
        return (
            "{"
            + ",".join(_dumps_str(kv.key) + ":" + _json(kv.value) for kv in value.kvlist_value.values)
            + "}"
        )
    return "null"


def render_value(value) -> str:
    """An OTLP ``AnyValue`` message as text (see the module docstring). Never raises."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return str(value.int_value)
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "double_value":
        return format_double(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which in ("array_value", "kvlist_value"):
        return _json(value)
    return ""
