"""OTLP/HTTP receiver: ``POST /v1/traces`` plus ``GET /healthz`` and ``GET /v1/status``.

A Starlette app served by uvicorn. Behaviour (OTLP/HTTP spec):

* ``Content-Type``: ``application/x-protobuf`` or ``application/json`` (parameters ignored);
  anything else gets 415. The response is an ``ExportTraceServiceResponse`` in the same type.
* ``Content-Encoding``: ``gzip`` or none (``identity``); others get 415.
* Size: a body over ``max_body_bytes`` (``--max-body-bytes``, default 16 MiB) gets 413 (status
  ``RESOURCE_EXHAUSTED``), checked on the bytes received *and* while stream-decompressing gzip, so
  a gzip bomb is refused after inflating at most ``max_body_bytes``. A gzip body of several
  members (concatenated streams, RFC 1952) is inflated member after member, all within that limit;
  bytes after the last member that are not another gzip member get 400.
* An undecodable body (bad protobuf, invalid UTF-8 in a protobuf string, bad JSON, non-hex id in
  JSON) gets 400 with a ``google.rpc.Status`` whose message says why.
* Spans that cannot be stored are reported in ``partial_success`` while the others are stored.
* A full write queue, or a storage failure that may pass (I/O error, out of memory), gets 503 with
  ``Retry-After: 1``; a request is answered 200 only once its spans are committed. A request whose
  spans DuckDB refuses even when inserted alone gets 200 with every span in ``partial_success``.
* Any other failure (a bug) is logged with its traceback (once per exception type) and answered
  500 with a ``google.rpc.Status`` (``INTERNAL``), never a traceback page.
* With ``ingest_token`` set, requests need ``Authorization: Bearer <token>`` (else 401).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import zlib

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .batch import DecodedBatch
from .decode import decode_request
from .fastdecode import decode_protobuf
from .otlp_json import OtlpJsonError, parse_otlp_json
from .writer import SpansRejected, SpanWriter, StorageUnavailable

log = logging.getLogger("tracehound.collector")
_logged_types: set[str] = set()


def log_unexpected(where: str, exc: BaseException) -> None:
    """Log an unexpected receiver error: the traceback the first time its type is seen, then one line."""
    key = f"{where}:{type(exc).__qualname__}"
    if key in _logged_types:
        log.error("%s failed: %s: %s", where, type(exc).__name__, exc)
    else:
        _logged_types.add(key)
        log.error("%s failed", where, exc_info=exc)


PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_S = 1

# google.rpc.Code values used in error bodies.
_INVALID_ARGUMENT, _UNAUTHENTICATED, _RESOURCE_EXHAUSTED, _UNAVAILABLE, _INTERNAL = 3, 16, 8, 14, 13


class _TooLarge(Exception):
    pass


def _status_response(http_status: int, code: int, message: str, media: str, headers=None) -> Response:
    status = status_pb2.Status(code=code, message=message)
    if media == JSON:
        body = json_format.MessageToJson(status, indent=None).encode()
    else:
        media = PROTOBUF
        body = status.SerializeToString()
    return Response(body, status_code=http_status, media_type=media, headers=headers)


def _export_response(decoded: DecodedBatch, media: str) -> Response:
    response = ExportTraceServiceResponse()
    message = decoded.error_message()
    if decoded.rejected or message:
        response.partial_success.rejected_spans = decoded.rejected
        response.partial_success.error_message = message
    if media == JSON:
        body = json_format.MessageToJson(response, indent=None).encode()
    else:
        body = response.SerializeToString()
    return Response(body, status_code=200, media_type=media)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Inflate every gzip member of ``data``, never beyond ``limit`` bytes in total.

    Raises :class:`_TooLarge` over the limit, ``zlib.error`` for a corrupt or truncated member or
    for trailing bytes that are not another gzip member.
    """
    parts, size = [], 0
    while True:
        inflater = zlib.decompressobj(wbits=31)
        out = inflater.decompress(data, limit - size + 1)
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise _TooLarge(f"decompressed body exceeds {limit} bytes (--max-body-bytes)")
        if not inflater.eof:
            raise zlib.error("truncated gzip stream")
        parts.append(out)
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
        if not data.startswith(b"\x1f\x8b"):
            raise zlib.error(f"{len(data)} bytes of trailing data after the gzip stream")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _TooLarge(f"body of {length} bytes exceeds {limit} bytes (--max-body-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(f"body exceeds {limit} bytes (--max-body-bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def create_otlp_http_app(
    writer: SpanWriter, max_body_bytes: int, ingest_token: str | None = None
) -> Starlette:
    """Build the OTLP/HTTP Starlette app writing through ``writer``.

    ``max_body_bytes`` bounds the raw and the decompressed body; ``ingest_token`` (optional)
    is the bearer token required on ``POST /v1/traces``.
    """
    stats = writer.stats
    expected_auth = f"Bearer {ingest_token}".encode() if ingest_token else None

    async def export(request: Request) -> Response:
        """``POST /v1/traces``: an OTLP ``ExportTraceServiceRequest`` (protobuf or JSON, maybe gzip).

        200 with ``ExportTraceServiceResponse`` once the spans are committed (``partial_success``
        for unstorable spans and warnings); 400/401/413/415/503 as in the module docstring, and
        500 with a ``google.rpc.Status`` (``INTERNAL``) for an unexpected error, which is logged.
        """
        try:
            return await _export(request)
        except Exception as exc:
            log_unexpected("OTLP/HTTP export", exc)
            media = JSON if request.headers.get("content-type", "").startswith(JSON) else PROTOBUF
            return _status_response(500, _INTERNAL, f"internal error: {type(exc).__name__}", media)

    async def _export(request: Request) -> Response:
        stats.requests += 1
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        media = JSON if content_type == JSON else PROTOBUF
        if expected_auth is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected_auth):
                return _status_response(
                    401,
                    _UNAUTHENTICATED,
                    "missing or wrong bearer token",
                    media,
                    {"WWW-Authenticate": "Bearer"},
                )
        if content_type not in (PROTOBUF, JSON):
            stats.requests_bad += 1
            return _status_response(
                415,
                _INVALID_ARGUMENT,
                f"unsupported Content-Type {content_type!r}: use {PROTOBUF} or {JSON}",
                media,
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity", ""):
            stats.requests_bad += 1
            return _status_response(
                415, _INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}: use gzip or none", media
            )
        try:
            body = await _read_body(request, max_body_bytes)
            if encoding == "gzip":
                body = _gunzip(body, max_body_bytes)
        except _TooLarge as exc:
            stats.requests_bad += 1
            return _status_response(413, _RESOURCE_EXHAUSTED, str(exc), media)
        except zlib.error as exc:
            stats.requests_bad += 1
            return _status_response(400, _INVALID_ARGUMENT, f"body is not valid gzip: {exc}", media)
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            decoded = decode_request(parse_otlp_json(body)) if media == JSON else decode_protobuf(body)
        except RecursionError:
            stats.requests_bad += 1
            return _status_response(400, _INVALID_ARGUMENT, "body is not OTLP: nesting too deep", media)
        except OtlpJsonError as exc:
            stats.requests_bad += 1
            return _status_response(400, _INVALID_ARGUMENT, str(exc), media)
        except DecodeError as exc:
            stats.requests_bad += 1
            return _status_response(
                400,
                _INVALID_ARGUMENT,
                f"body is not a protobuf ExportTraceServiceRequest (truncated, garbage, or a string "
                f"that is not valid UTF-8): {exc}",
                media,
            )
        stats.spans_received += decoded.count + decoded.rejected
        stats.spans_rejected += decoded.rejected
        if decoded.count:
            future = writer.submit(decoded)
            if future is None:
                stats.requests_refused_busy += 1
                return _status_response(
                    503,
                    _UNAVAILABLE,
                    f"write queue full ({writer.queue_max_spans} spans, --queue-max-spans): retry later",
                    media,
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            try:
                await asyncio.wrap_future(future)
            except SpansRejected as exc:
                stats.spans_rejected += decoded.count
                decoded = decoded.all_rejected(str(exc))
            except StorageUnavailable as exc:
                return _status_response(
                    503, _UNAVAILABLE, str(exc), media, headers={"Retry-After": str(RETRY_AFTER_S)}
                )
        return _export_response(decoded, media)

    async def healthz(request: Request) -> Response:
        """``GET /healthz``: ``ok`` while the receiver runs (no token needed)."""
        return PlainTextResponse("ok\n")

    async def status(request: Request) -> Response:
        """``GET /v1/status``: the :class:`~.writer.IngestStats` counters plus ``queue_spans``."""
        return JSONResponse({**stats.as_dict(), "queue_spans": writer.pending_spans})

    return Starlette(
        routes=[
            Route("/v1/traces", export, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/status", status, methods=["GET"]),
        ]
    )
