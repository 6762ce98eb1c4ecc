"""ENGINE=openai: any OpenAI-compatible chat-completions server, such as vLLM serving Qwen2-Audio or Qwen2.5-Omni.

Each window is one request: a base64 WAV ``input_audio`` content part beside the text prompt. MAX_CONCURRENCY
requests are in flight (the server batches them); timeouts, 429 and 5xx answers are retried with exponential
backoff, other 4xx answers are not (the request itself is wrong). Sampling parameters are always sent, because
vLLM otherwise applies the model's own generation defaults.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests

from ml_backend.describe.prompt import describe_answer, request_prompt

from ml_backend.describe.types import WindowDescription, WindowRequest

log = logging.getLogger(__name__)

MODEL_SR = 16000  # Hz
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0


class RequestFailed(Exception):
    """A chat-completions request failed for good; the message names the status and what the server said."""


def wav_bytes(audio: np.ndarray, sr: int = MODEL_SR) -> bytes:
    """``audio`` (mono float, -1..1, ``sr`` Hz) as a 16-bit PCM WAV file (NaN as 0, clipped to -1..1)."""
    samples = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1)), -1.0, 1.0)
    pcm = (samples * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def wav_base64(audio: np.ndarray, sr: int = MODEL_SR) -> str:
    """``wav_bytes`` as base64 text (the chat API's ``input_audio`` data)."""
    return base64.b64encode(wav_bytes(audio, sr)).decode("ascii")


def backoff_seconds(attempt: int, base: float, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): the server's Retry-After when it gives
    seconds, else base * 2**attempt; capped at MAX_BACKOFF_SECONDS."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), MAX_BACKOFF_SECONDS)
        except ValueError:
            pass  # an HTTP date: use our own schedule
    return min(base * (2 ** attempt), MAX_BACKOFF_SECONDS)


class OpenAIEngine:
    """Describe windows through an OpenAI-compatible /chat/completions endpoint."""

    name = "openai"

    def __init__(self, base_url: str, model_id: str, api_key: str = "EMPTY", max_concurrency: int = 4,
                 request_timeout: float = 120.0, max_retries: int = 3, max_tokens: int = 384,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, backoff_base: float = 1.0):
        """``base_url`` ends before /chat/completions (e.g. http://localhost:8000/v1); times are in seconds."""
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.api_key = api_key
        self.max_concurrency = max(1, max_concurrency)
        self.request_timeout = request_timeout
        self.max_retries = max(0, max_retries)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.backoff_base = backoff_base
        self._local = threading.local()  # one requests.Session per worker thread (sessions are not thread-safe)

    @classmethod
    def from_settings(cls, settings) -> "OpenAIEngine":
        return cls(settings.openai_base_url, settings.model_id, api_key=settings.openai_api_key,
                   max_concurrency=settings.max_concurrency, request_timeout=settings.request_timeout,
                   max_retries=settings.max_retries, max_tokens=settings.max_new_tokens,
                   temperature=settings.temperature, top_p=settings.top_p)

    def parameters(self) -> dict:
        """The sampling fields every request carries (hashed into model_version)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed}

    # ------------------------------------------------------------------------------------------ requests

    def window_body(self, req: WindowRequest) -> dict:
        """The chat-completions body for one window: audio part, then the prompt with the window length."""
        content = [
            {"type": "input_audio", "input_audio": {"data": wav_base64(req.audio), "format": "wav"}},
            {"type": "text", "text": request_prompt(req)},
        ]
        return self._body([{"role": "user", "content": content}])

    def _body(self, messages: list[dict]) -> dict:
        return {"model": self.model_id, "messages": messages, **self.parameters()}

    def describe_windows(self, requests_: list[WindowRequest]) -> list[WindowDescription]:
        """One description per window, same order, at most MAX_CONCURRENCY requests in flight."""
        if not requests_:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests_))) as pool:
            return list(pool.map(self._describe_one, requests_))

    def _describe_one(self, req: WindowRequest) -> WindowDescription:
        try:
            text = self.complete(self.window_body(req))
        except RequestFailed as exc:
            log.warning("window %.1f-%.1f s: %s", req.start, req.end, exc)
            return WindowDescription.failed(str(exc))
        return describe_answer(text, req)

    def summarize(self, text_prompt: str) -> str | None:
        """A text-only completion (the song caption); ``None`` when the server fails."""
        try:
            return self.complete(self._body([{"role": "user", "content": text_prompt}]))
        except RequestFailed as exc:
            log.warning("caption request failed: %s", exc)
            return None

    def complete(self, body: dict) -> str:
        """POST ``body`` to /chat/completions and return the first choice's text, retrying timeouts, connection
        errors, 429 and 5xx up to MAX_RETRIES times with exponential backoff. Raises RequestFailed."""
        url = f"{self.base_url}/chat/completions"
        resp = post_with_retries(thread_session(self._local), url, self.api_key, self.request_timeout, self.max_retries,
                                 self.backoff_base, json=body,
                                 hint="check MODEL_ID, OPENAI_API_KEY and the server's audio support")
        return _message_text(resp, url)


def thread_session(local: threading.local) -> requests.Session:
    """The calling thread's ``requests.Session``, kept in ``local``: sessions are not thread-safe, so each worker
    thread of an engine's pool gets its own (and keeps its connections alive between requests)."""
    session = getattr(local, "session", None)
    if session is None:
        session = local.session = requests.Session()
    return session


def post_with_retries(session: requests.Session, url: str, api_key: str, timeout: float, max_retries: int,
                      backoff_base: float = 1.0, hint: str = "check the model id and the API key",
                      **post_kwargs) -> requests.Response:
    """POST to ``url`` (``post_kwargs``: json=, files=, data=) with a bearer key and ``timeout`` seconds per try;
    timeouts, connection errors, 429 and 5xx are retried up to ``max_retries`` times with exponential backoff
    (the server's Retry-After when given); ``hint`` says what to check when a 4xx is not retried. Returns the
    200 response; raises RequestFailed otherwise. Shared by the description engine and the lyrics engine
    (ml_backend/lyrics/engines/openai_engine.py)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    last = ""
    for attempt in range(max_retries + 1):
        retry_after = None
        try:
            resp = session.post(url, headers=headers, timeout=timeout, **post_kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            last = f"{type(exc).__name__} after {timeout:g} s: {exc}"
        else:
            if resp.status_code == 200:
                return resp
            last = f"HTTP {resp.status_code} from {url}: {resp.text[:300]}"
            if resp.status_code not in RETRY_STATUSES:
                raise RequestFailed(f"{last} (not retried: {hint})")
            retry_after = resp.headers.get("Retry-After")
        if attempt < max_retries:
            wait = backoff_seconds(attempt, backoff_base, retry_after)
            log.info("request to %s failed (%s); retry %d/%d in %.1f s", url, last[:120], attempt + 1,
                     max_retries, wait)
            time.sleep(wait)
    raise RequestFailed(f"{last} (gave up after {max_retries} retries; raise REQUEST_TIMEOUT or lower "
                        "MAX_CONCURRENCY if the server is overloaded)")


def _message_text(resp: requests.Response, url: str) -> str:
    """The assistant text of an OpenAI chat-completions response; RequestFailed when the shape is wrong."""
    try:
        message = resp.json()["choices"][0]["message"]
        content = message.get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise RequestFailed(f"unexpected response from {url} ({type(exc).__name__}): {resp.text[:300]}") from None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise RequestFailed(f"response from {url} has no message text: {resp.text[:300]}")
    return content
