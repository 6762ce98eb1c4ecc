"""One scripted stand-in for an OpenAI-compatible server (vLLM, faster-whisper servers), shared by every test that
needs one. It answers in the real response shapes; the test's ``reply(body, n)`` decides each answer, so a test can
script failures, prose instead of JSON, cut-off JSON, slow answers and the like.

``body`` is the request's JSON object, or for a multipart form (``/v1/audio/transcriptions``) a dict of its fields
with file parts as bytes. ``n`` counts requests from 0. ``reply`` returns ``(status, payload, delay_seconds)``:
a dict payload is sent as JSON, a str as it is (malformed answers).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(text: str, model: str = "qwen", n: int = 1) -> dict:
    """A chat-completions response as vLLM sends it."""
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def has_audio(body: dict) -> bool:
    """True when a chat request carries an audio part (``input_audio`` or ``audio_url``)."""
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list) and any(
                isinstance(p, dict) and p.get("type") in ("input_audio", "audio_url") for p in content):
            return True
    return False


def parse_form(content_type: str, data: bytes) -> dict:
    """A multipart/form-data body as {field: str, or bytes for a file part}."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    fields: dict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[name] = payload if part.get_filename() else payload.decode("utf-8", "replace")
    return fields


class OpenAIStandIn:
    """A local server on 127.0.0.1 that records every request (bodies, headers, paths, requests in flight) and
    answers with ``reply(body, n)``. Use as a context manager, or call ``close()``."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                content_type = self.headers.get("Content-Type", "")
                body = parse_form(content_type, data) if content_type.startswith("multipart/") else json.loads(data)
                with stand_in.lock:
                    n = len(stand_in.bodies)
                    stand_in.bodies.append(body)
                    stand_in.headers.append(dict(self.headers))
                    stand_in.paths.append(self.path)
                    stand_in.in_flight += 1
                    stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                try:
                    status, payload, delay = stand_in.reply(body, n)
                    if delay:
                        time.sleep(delay)
                    out = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)
                finally:
                    with stand_in.lock:
                        stand_in.in_flight -= 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "OpenAIStandIn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
