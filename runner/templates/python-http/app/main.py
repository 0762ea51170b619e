"""{{project_name}}: a small HTTP service on the standard library.

Add a route by adding a function to ROUTES. What the service is for is in README.md.
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def health(_handler):
    return 200, {"ok": True}


# Method and path → handler returning (status, JSON-able body).
ROUTES = {
    ("GET", "/healthz"): health,
}


class Handler(BaseHTTPRequestHandler):
    def _dispatch(self, method):
        route = ROUTES.get((method, self.path.split("?", 1)[0]))
        status, body = route(self) if route else (404, {"error": "not found"})
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def log_message(self, format, *args):
        print(f"{self.address_string()} {format % args}", flush=True)


def serve(port=None):
    server = ThreadingHTTPServer(("0.0.0.0", int(port or os.environ.get("PORT", "8000"))), Handler)
    return server


if __name__ == "__main__":
    server = serve()
    print(f"{{project_name}} listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()
