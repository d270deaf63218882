"""A webhook receiver for the bench: answers every POST 204 at once and counts the deliveries,
and the distinct webhook-ids, it was sent. GET answers the counts as JSON. Runs as a process of its
own, so its CPU is neither the service's nor the load generator's.

    python -m benchkit.receiver          prints "listening on http://127.0.0.1:PORT", then serves
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
SEEN: set[str] = set()
COUNTS = {"deliveries": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        with LOCK:
            COUNTS["deliveries"] += 1
            SEEN.add(self.headers.get("webhook-id") or "")
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        with LOCK:
            body = json.dumps({"deliveries": COUNTS["deliveries"], "events": len(SEEN)}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
