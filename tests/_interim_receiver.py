"""INTERIM stand-in for tests/support/server.py (deleted once the collector's helper is merged)."""

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import free_port
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

KINDS = ["Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"]


def _render(value):
    d = MessageToDict(value)
    ((k, v),) = d.items()
    if k == "boolValue":
        return "true" if v else "false"
    if k in ("arrayValue", "kvlistValue"):
        return json.dumps(v)
    return str(v)


@contextlib.contextmanager
def interim_server(tmp_path):
    spans = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                res = {kv.key: _render(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        spans.append(
                            {
                                "name": sp.name,
                                "kind": KINDS[sp.kind],
                                "service": res.get("service.name"),
                                "scope": ss.scope.name,
                                "trace_id": sp.trace_id.hex(),
                                "span_id": sp.span_id.hex(),
                                "parent": sp.parent_span_id.hex(),
                                "attrs": {kv.key: _render(kv.value) for kv in sp.attributes},
                                "resource": res,
                                "start": sp.start_time_unix_nano,
                            }
                        )
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *a):
            pass

    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    class S:
        otlp_http_endpoint = f"http://127.0.0.1:{port}"

        def spans(self, min_count=1, timeout=20.0):
            deadline = time.monotonic() + timeout
            while len(spans) < min_count and time.monotonic() < deadline:
                time.sleep(0.1)
            return sorted(spans, key=lambda s: s["start"])

    try:
        yield S()
    finally:
        srv.shutdown()
