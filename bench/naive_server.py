"""Naive OTLP/HTTP baseline for bench/ingest.py: flatten each span into a dict, insert each request
on its own through Arrow (``insert_span_rows``), commit, answer. Same HTTP stack as tracehound.

Usage: ``python bench/naive_server.py DB PORT`` (prints ``ready`` when listening; SIGTERM stops).
"""

from __future__ import annotations

import signal
import sys
import threading

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tracehound.collector.anyvalue import render_value
from tracehound.collector.batch import SPAN_KINDS, STATUS_CODES
from tracehound.collector.store import insert_span_rows, open_database


def _attrs(kvs) -> dict:
    return {kv.key: render_value(kv.value) for kv in kvs}


def flatten(request: ExportTraceServiceRequest) -> list[dict]:
    """One dict per span keyed by otel_traces column (the straightforward way)."""
    rows = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = ss.scope
            for s in ss.spans:
                rows.append(
                    {
                        "Timestamp": s.start_time_unix_nano,
                        "TraceId": s.trace_id.hex(),
                        "SpanId": s.span_id.hex(),
                        "ParentSpanId": s.parent_span_id.hex(),
                        "TraceState": s.trace_state,
                        "SpanName": s.name,
                        "SpanKind": SPAN_KINDS[s.kind],
                        "ServiceName": resource.get("service.name", "unknown_service"),
                        "ResourceAttributes": resource,
                        "ResourceSchemaUrl": rs.schema_url,
                        "ResourceDroppedAttributesCount": rs.resource.dropped_attributes_count,
                        "ScopeName": scope.name,
                        "ScopeVersion": scope.version,
                        "ScopeAttributes": _attrs(scope.attributes),
                        "ScopeSchemaUrl": ss.schema_url,
                        "ScopeDroppedAttributesCount": scope.dropped_attributes_count,
                        "SpanAttributes": _attrs(s.attributes),
                        "Duration": s.end_time_unix_nano - s.start_time_unix_nano,
                        "StatusCode": STATUS_CODES[s.status.code],
                        "StatusMessage": s.status.message,
                        "Flags": s.flags,
                        "DroppedAttributesCount": s.dropped_attributes_count,
                        "DroppedEventsCount": s.dropped_events_count,
                        "DroppedLinksCount": s.dropped_links_count,
                        "Events": [
                            {
                                "Timestamp": e.time_unix_nano,
                                "Name": e.name,
                                "Attributes": _attrs(e.attributes),
                                "DroppedAttributesCount": e.dropped_attributes_count,
                            }
                            for e in s.events
                        ],
                        "Links": [
                            {
                                "TraceId": k.trace_id.hex(),
                                "SpanId": k.span_id.hex(),
                                "TraceState": k.trace_state,
                                "Attributes": _attrs(k.attributes),
                                "DroppedAttributesCount": k.dropped_attributes_count,
                                "Flags": k.flags,
                            }
                            for k in s.links
                        ],
                    }
                )
    return rows


def main(db: str, port: int) -> None:
    con = open_database(db)
    lock = threading.Lock()
    committed = [0]

    def store(body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        rows = flatten(request)
        with lock:
            committed[0] += insert_span_rows(con, rows)

    async def export(request: Request) -> Response:
        await run_in_threadpool(store, await request.body())
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    async def status(request: Request) -> Response:
        return Response(f'{{"spans_committed": {committed[0]}}}', media_type="application/json")

    app = Starlette(routes=[Route("/v1/traces", export, methods=["POST"]), Route("/v1/status", status)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises it after its graceful shutdown
    print("ready", flush=True)
    server.run()
    con.execute("CHECKPOINT")
    con.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
