"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` (grpc.aio).

* gzip-compressed messages are accepted (grpcio decompresses them).
* Messages over ``max_body_bytes`` (``--max-body-bytes``) are refused by grpcio with
  ``RESOURCE_EXHAUSTED`` (it applies ``grpc.max_receive_message_length``).
* A full write queue gets ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` (retry after 1 s) in
  the status details (trailer ``grpc-status-details-bin``), which OTLP exporters honour.
* A storage failure that may pass (I/O error, out of memory) gets ``UNAVAILABLE`` with the same
  ``RetryInfo``; spans DuckDB refuses even alone are reported in ``partial_success``.
* Unstorable spans are reported in ``partial_success`` as on OTLP/HTTP.
* Any other failure (a bug) is logged (traceback once per exception type) and answered
  ``INTERNAL`` with a one-line message.
* With ``ingest_token`` set, calls need metadata ``authorization: Bearer <token>``
  (else ``UNAUTHENTICATED``).
"""

from __future__ import annotations

import asyncio
import hmac

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .fastdecode import decode_protobuf
from .http_receiver import log_unexpected
from .writer import SpansRejected, SpanWriter, StorageUnavailable

RETRY_AFTER_S = 1


def _retry_trailer(message: str) -> tuple:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_S))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.add().Pack(retry)
    return (("grpc-status-details-bin", status.SerializeToString()),)


SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class TraceService:
    """Decodes each Export call and waits for its spans to be committed before answering.

    The method receives the raw request bytes and parses them itself, so that an undecodable
    message (garbage, invalid UTF-8 in a string) gets ``INVALID_ARGUMENT`` with a message instead
    of grpcio's generic ``UNKNOWN``.
    """

    def __init__(self, writer: SpanWriter, ingest_token: str | None = None):
        self._writer = writer
        self._expected = f"Bearer {ingest_token}".encode() if ingest_token else None

    async def export(self, body: bytes, context):
        """Store the request's spans; returns ``ExportTraceServiceResponse`` after commit.

        Aborts with the status codes of the module docstring (``INTERNAL`` for a bug, logged).
        """
        try:
            return await self._export(body, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            log_unexpected("OTLP/gRPC export", exc)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    async def _export(self, body: bytes, context):
        stats = self._writer.stats
        stats.requests += 1
        if self._expected is not None:
            given = dict(context.invocation_metadata() or ()).get("authorization", "")
            if not hmac.compare_digest(given.encode(), self._expected):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            decoded = decode_protobuf(body)
        except DecodeError as exc:
            stats.requests_bad += 1
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"message is not a protobuf ExportTraceServiceRequest (truncated, garbage, or a string "
                f"that is not valid UTF-8): {exc}",
            )
        stats.spans_received += decoded.count + decoded.rejected
        stats.spans_rejected += decoded.rejected
        if decoded.count:
            future = self._writer.submit(decoded)
            if future is None:
                stats.requests_refused_busy += 1
                message = (
                    f"write queue full ({self._writer.queue_max_spans} spans, --queue-max-spans): retry later"
                )
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, message, trailing_metadata=_retry_trailer(message)
                )
            try:
                await asyncio.wrap_future(future)
            except SpansRejected as exc:
                stats.spans_rejected += decoded.count
                decoded = decoded.all_rejected(str(exc))
            except StorageUnavailable as exc:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, str(exc), trailing_metadata=_retry_trailer(str(exc))
                )
        response = ExportTraceServiceResponse()
        message = decoded.error_message()
        if decoded.rejected or message:
            response.partial_success.rejected_spans = decoded.rejected
            response.partial_success.error_message = message
        return response


def create_grpc_server(
    writer: SpanWriter, max_body_bytes: int, ingest_token: str | None = None
) -> grpc.aio.Server:
    """A ``grpc.aio.Server`` (not started, no port yet) serving :class:`TraceService`."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_body_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    service = TraceService(writer, ingest_token)
    handler = grpc.unary_unary_rpc_method_handler(
        service.export,
        request_deserializer=None,  # raw bytes: parsed in export()
        response_serializer=ExportTraceServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
    return server
