"""A hostile media server for the security tests: a real HTTP server on 127.0.0.1 (the only address tests may
contact) that trickles, streams without end, redirects into loopback, and logs every request's headers.

Routes (GET):
- ``/file/<name>``: the bytes registered with ``serve(name, data)``;
- ``/trickle``: a 200 announcing 64 KiB, then one byte every ``trickle_seconds``, until the client leaves;
- ``/drip``: like ``/trickle`` without Content-Length (the body ends when the connection closes);
- ``/endless``: a 200 without Content-Length, then 64 KiB blocks until the client leaves;
- ``/redirect?to=<url>``: 302 to ``<url>``;
- ``/huge``: a 200 announcing 10 GiB (nothing sent after the headers).
Every request is logged as ``(path, headers)``; ``sent[path]`` counts body bytes written, ``left[path]`` is set
when the client went away.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class HostileServer:
    def __init__(self, trickle_seconds: float = 0.5):
        self.trickle_seconds = trickle_seconds
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict]] = []
        self.sent: dict[str, int] = {}
        self.left: dict[str, threading.Event] = {p: threading.Event() for p in ("/trickle", "/drip", "/endless")}
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                server.requests.append((self.path, dict(self.headers)))
                try:
                    if parts.path.startswith("/file/"):
                        self._file(parts.path[len("/file/"):])
                    elif parts.path == "/trickle":
                        self._stream("/trickle", b"x", server.trickle_seconds, length=1 << 16)
                    elif parts.path == "/drip":
                        self._stream("/drip", b"x", server.trickle_seconds, length=None)
                    elif parts.path == "/endless":
                        self._stream("/endless", b"\0" * 65536, 0.0, length=None)
                    elif parts.path == "/redirect":
                        self.send_response(302)
                        self.send_header("Location", parse_qs(parts.query)["to"][0])
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    elif parts.path == "/huge":
                        self.send_response(200)
                        self.send_header("Content-Length", str(10 << 30))
                        self.end_headers()
                        self.wfile.flush()
                        server.stop.wait(30)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _file(self, name):
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, key, block, pause, length):
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                else:
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    while not server.stop.is_set():
                        self.wfile.write(block)
                        self.wfile.flush()
                        server.sent[key] = server.sent.get(key, 0) + len(block)
                        if pause:
                            server.stop.wait(pause)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    server.left[key].set()
                    raise BrokenPipeError

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, name: str, data: bytes) -> str:
        """Serve ``data`` at ``/file/<name>``; returns its URL."""
        self.files[name] = data
        return f"{self.url}/file/{name}"

    def paths(self) -> list[str]:
        return [urlsplit(p).path for p, _ in self.requests]

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(predicate, seconds: float = 10.0):
    """Poll ``predicate`` until it returns something true (returned) or ``seconds`` pass (for events in another
    process or thread)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()
