"""OTLP/JSON -> ``ExportTraceServiceRequest``, following the OTLP JSON encoding rules.

The OTLP JSON encoding differs from protobuf's canonical JSON mapping in one way that matters:
``traceId``, ``spanId`` and ``parentSpanId`` (in spans and links) are hex strings, not base64.
``json_format.Parse`` would read them as base64 and silently store wrong ids, so this module first
rewrites each id from hex to base64 itself, and only then lets ``json_format.ParseDict`` handle the
rest (lowerCamelCase or snake_case keys, int64 as strings or numbers, enums as integers or names).
Unknown fields are ignored, as the OTLP spec requires of receivers.
"""

from __future__ import annotations

import base64
import json
import string

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_HEX = frozenset(string.hexdigits)
_ID_KEYS = (
    ("traceId", "trace_id"),
    ("spanId", "span_id"),
    ("parentSpanId", "parent_span_id"),
)


class OtlpJsonError(ValueError):
    """The body is not OTLP/JSON (bad JSON, wrong shape, or an id that is not hex)."""


def _list(obj, *names) -> list:
    for name in names:
        if name in obj:
            value = obj[name]
            if value is None:
                return []
            if not isinstance(value, list):
                raise OtlpJsonError(f"{names[0]!r} must be a JSON array, got {type(value).__name__}")
            return value
    return []


def _hex_to_b64(obj: dict, where: str) -> None:
    for camel, snake in _ID_KEYS:
        for key in (camel, snake):
            if key not in obj:
                continue
            value = obj[key]
            if value is None or value == "":
                obj[key] = ""
                continue
            if not isinstance(value, str) or len(value) % 2 or not _HEX.issuperset(value):
                hint = " (looks like base64: OTLP/JSON encodes ids as hex)" if isinstance(value, str) else ""
                raise OtlpJsonError(f"{where} {camel} {value!r} is not a hex string{hint}")
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")


def parse_otlp_json(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest`` body.

    Raises :class:`OtlpJsonError` with a message fit for a 400 response when the body is not
    UTF-8 JSON, is nested deeper than Python's recursion limit ("nesting too deep"), is not an
    object, has a non-hex id, or does not match the OTLP message shape.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpJsonError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise OtlpJsonError("body is not OTLP/JSON: nesting too deep") from None
    if not isinstance(doc, dict):
        raise OtlpJsonError("body must be a JSON object (ExportTraceServiceRequest)")
    for r_i, rs in enumerate(_list(doc, "resourceSpans", "resource_spans")):
        if not isinstance(rs, dict):
            raise OtlpJsonError(f"resourceSpans[{r_i}] must be an object")
        for s_i, ss in enumerate(_list(rs, "scopeSpans", "scope_spans")):
            if not isinstance(ss, dict):
                raise OtlpJsonError(f"resourceSpans[{r_i}].scopeSpans[{s_i}] must be an object")
            for p_i, span in enumerate(_list(ss, "spans")):
                where = f"resourceSpans[{r_i}].scopeSpans[{s_i}].spans[{p_i}]"
                if not isinstance(span, dict):
                    raise OtlpJsonError(f"{where} must be an object")
                _hex_to_b64(span, where)
                for l_i, link in enumerate(_list(span, "links")):
                    if not isinstance(link, dict):
                        raise OtlpJsonError(f"{where}.links[{l_i}] must be an object")
                    _hex_to_b64(link, f"{where}.links[{l_i}]")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise OtlpJsonError(f"body is not an OTLP ExportTraceServiceRequest: {exc}") from None
    except RecursionError:  # e.g. kvlists nested deeper than protobuf's recursion limit
        raise OtlpJsonError("body is not OTLP/JSON: nesting too deep") from None
    return request
