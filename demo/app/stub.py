"""A tiny carrier rate service the demo's shipping routes call (run: ``python -m tracehound.demo.app.stub``).

``GET /v1/carriers/NAME/rates?weight_g=N`` (one API per carrier) answers after ``LIVE_DELAY_S``
(0.55 s, a slow live quote) with ``{"carrier": str, "price": float (euros)}``. ``GET /healthz``
answers ``ok``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LIVE_DELAY_S = 0.55


def _price(carrier: str, weight_g: int) -> float:
    return round(3.49 + len(carrier) * 0.1 + 0.002 * max(0, weight_g - 500), 2)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        try:
            weight_g = int(query.get("weight_g", ["800"])[0])
        except ValueError:
            return self._send(400, {"error": "weight_g must be an integer (grams)"})
        if url.path == "/healthz":
            return self._send(200, {"status": "ok"})
        parts = url.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "carriers"] and parts[3] == "rates":
            carrier = parts[2]
            time.sleep(LIVE_DELAY_S)
            return self._send(200, {"carrier": carrier, "price": _price(carrier, weight_g)})
        return self._send(404, {"error": f"no route {url.path}"})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep the demo's console quiet
        pass


def start_stub(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Serve the stub on a daemon thread; returns ``(server, base_url)``. ``port=0`` picks a free one.

    Raises ``OSError`` when the port is taken. Stop it with ``server.shutdown()``.
    """
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rate-stub", daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
    server.daemon_threads = True
    print(f"rate stub listening on http://{args.host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
