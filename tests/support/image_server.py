"""A loopback HTTP server that serves images, and every hostile answer an image URL can get, for the images-by-URL
tests. Routes (query parameters in brackets):

- ``/image.png``: a small PNG; ``/text``: a text page; ``/missing``: 404;
- ``/redirect?to=URL`` (``&status=302``): a redirect; ``/loop``: redirects to itself, forever;
- ``/big``: claims (Content-Length) far more than any limit; ``/stream?bytes=N``: N bytes, no Content-Length;
- ``/slow?seconds=S``: a status and headers at once, then one body byte every S/10 seconds for S seconds;
- ``/gzip?bytes=N``: N zero bytes gzip-compressed, with ``Content-Encoding: gzip``.

Every route is also served below ``/public/`` (for tests that allow only that prefix). Every request's Host header
is recorded in `hosts`, its path in `paths`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image


def png_bytes(size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.image = png_bytes()
        self.hosts: list[str] = []
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.hosts.append(self.headers.get("Host", ""))
                owner.paths.append(self.path)
                owner.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        path = parts.path.removeprefix("/public") if parts.path.startswith("/public/") else parts.path
        if path == "/image.png":
            self._send(handler, 200, self.image, "image/png")
        elif path == "/text":
            self._send(handler, 200, b"<html>not an image</html>", "text/html")
        elif path == "/redirect":
            self._send(handler, int(query.get("status", "302")), b"", headers={"Location": query["to"]})
        elif path == "/loop":
            self._send(handler, 302, b"", headers={"Location": "/loop"})
        elif path == "/big":
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            handler.send_header("Content-Length", str(10 << 30))
            handler.end_headers()
            with contextlib.suppress(OSError):
                handler.wfile.write(self.image)
        elif path == "/stream":
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            handler.send_header("Connection", "close")
            handler.end_headers()
            remaining = int(query["bytes"])
            with contextlib.suppress(OSError):
                while remaining > 0:
                    chunk = min(remaining, 64 << 10)
                    handler.wfile.write(b"\0" * chunk)
                    remaining -= chunk
        elif path == "/slow":
            seconds = float(query.get("seconds", "5"))
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            handler.send_header("Content-Length", "10")
            handler.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(10):
                    handler.wfile.write(b"\0")
                    handler.wfile.flush()
                    time.sleep(seconds / 10)
        elif path == "/gzip":
            body = gzip.compress(b"\0" * int(query["bytes"]))
            self._send(handler, 200, body, "image/png", {"Content-Encoding": "gzip"})
        else:
            self._send(handler, 404, b"not found", "text/plain")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str = "text/plain",
              headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(body)


@contextlib.contextmanager
def image_server(tls: ssl.SSLContext | None = None) -> Iterator[ImageServer]:
    """The server on a free loopback port (HTTPS with `tls`, a server-side context)."""
    server = ImageServer(tls)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
