"""{{project_name}}: a static site, served from site/ on the standard library.

Pages and assets go in site/ (site/index.html is /). Caching: HTML is revalidated on every visit
(no-cache, with an ETag), a file whose name carries a content hash (app.3f9a1c2b.js) is kept for a
year (immutable), any other asset for an hour. /healthz answers {"ok": true} for the deploy's checks.
"""
import hashlib
import json
import mimetypes
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SITE = os.path.realpath(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "site"))
HASHED = re.compile(r"\.[0-9a-f]{8,}\.[a-z0-9]+$")


def cache_control(path):
    if path.endswith(".html"):
        return "no-cache"
    if HASHED.search(path):
        return "public, max-age=31536000, immutable"
    return "public, max-age=3600"


def resolve(url_path):
    """The file a URL path names inside site/, or None (never a file outside it)."""
    path = url_path.split("?", 1)[0].split("#", 1)[0]
    if path.endswith("/"):
        path += "index.html"
    candidate = os.path.realpath(os.path.join(SITE, path.lstrip("/")))
    if candidate != SITE and not candidate.startswith(SITE + os.sep):
        return None
    if os.path.isdir(candidate):
        candidate = os.path.join(candidate, "index.html")
    return candidate if os.path.isfile(candidate) else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body, content_type, headers=None, head=False):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-content-type-options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head):
        if self.path.split("?", 1)[0] == "/healthz":
            return self._send(200, json.dumps({"ok": True}).encode(), "application/json", head=head)
        file = resolve(self.path)
        if file is None:
            missing = resolve("/404.html")
            body = open(missing, "rb").read() if missing else b"not found"
            return self._send(404, body, "text/html; charset=utf-8" if missing else "text/plain", {"cache-control": "no-cache"}, head)
        with open(file, "rb") as handle:
            body = handle.read()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"cache-control": cache_control(file), "etag": etag}
        if self.headers.get("if-none-match") == etag:
            self.send_response(304)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            return self.end_headers()
        content_type = mimetypes.guess_type(file)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "application/json", "image/svg+xml"):
            content_type += "; charset=utf-8"
        self._send(200, body, content_type, headers, head)

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def log_message(self, format, *args):
        print(f"{self.address_string()} {format % args}", flush=True)


def serve(port=None):
    return ThreadingHTTPServer(("0.0.0.0", int(port or os.environ.get("PORT", "8000"))), Handler)


if __name__ == "__main__":
    server = serve()
    print(f"{{project_name}} listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()
