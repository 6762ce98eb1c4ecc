"""LYRICS_ENGINE=openai: any OpenAI-compatible ``/v1/audio/transcriptions`` server (vLLM serving Whisper, a
faster-whisper server) at LYRICS_BASE_URL, model LYRICS_MODEL_ID, key LYRICS_API_KEY.

Each chunk is one multipart request with ``response_format=verbose_json`` and both timestamp granularities. The
answer is read for the subset a server gives: ``words`` (word, start, end) when present, else each segment's text
spread over the segment's time by length; ``segments`` with ``no_speech_prob``, ``avg_logprob`` and
``compression_ratio`` (null or absent values are left unknown) for the guards; ``language`` (a name such as
"english" or a code). Timeouts, retries, backoff and the number of requests in flight are the description
engine's (REQUEST_TIMEOUT, MAX_RETRIES, MAX_CONCURRENCY, through ``post_with_retries``).
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor


from ml_backend.describe.engines.openai_engine import RequestFailed, post_with_retries, thread_session, wav_bytes
from ml_backend.lyrics.engines.base import ChunkAudio, ChunkResult
from ml_backend.lyrics.types import Segment, Word

log = logging.getLogger(__name__)

MAX_WORDS_PER_CHUNK = 2000  # far beyond 30 s of singing: a longer answer is garbage and is cut here
MAX_WORD_CHARS = 200  # one "word" longer than this is not a word


class TranscriptionEngine:
    """Transcribe 30 s chunks through an OpenAI-compatible transcription endpoint."""

    name = "openai"

    def __init__(self, base_url: str, model_id: str, api_key: str = "EMPTY", max_concurrency: int = 4,
                 request_timeout: float = 120.0, max_retries: int = 3, backoff_base: float = 1.0):
        """``base_url`` ends before /audio/transcriptions (e.g. http://localhost:8001/v1); times in seconds."""
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.api_key = api_key
        self.max_concurrency = max(1, max_concurrency)
        self.request_timeout = request_timeout
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self._local = threading.local()  # one requests.Session per worker thread

    @classmethod
    def from_settings(cls, settings) -> "TranscriptionEngine":
        return cls(settings.lyrics_base_url, settings.lyrics_model_id, api_key=settings.lyrics_api_key,
                   max_concurrency=settings.max_concurrency, request_timeout=settings.request_timeout,
                   max_retries=settings.max_retries)

    def transcribe_chunks(self, chunks: list[ChunkAudio]) -> list[ChunkResult]:
        """One result per chunk, same order, at most MAX_CONCURRENCY requests in flight."""
        if not chunks:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(chunks))) as pool:
            return list(pool.map(self._one, chunks))

    def _one(self, chunk: ChunkAudio) -> ChunkResult:
        url = f"{self.base_url}/audio/transcriptions"
        duration = chunk.audio.size / 16000.0
        files = {"file": ("chunk.wav", wav_bytes(chunk.audio), "audio/wav")}
        data = [("model", self.model_id), ("response_format", "verbose_json"), ("temperature", "0"),
                ("timestamp_granularities[]", "word"), ("timestamp_granularities[]", "segment")]
        try:
            resp = post_with_retries(thread_session(self._local), url, self.api_key, self.request_timeout,
                                     self.max_retries, self.backoff_base, files=files, data=data,
                                     hint="check LYRICS_MODEL_ID, LYRICS_API_KEY and that the server supports "
                                          "response_format=verbose_json")
            return parse_verbose_json(resp.json(), duration)
        except RequestFailed as exc:
            log.warning("transcription request failed: %s", exc)
            return ChunkResult.failed(str(exc))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            message = f"unexpected transcription answer from {url} ({type(exc).__name__}: {str(exc)[:200]})"
            log.warning("%s", message)
            return ChunkResult.failed(message)


def _number(value) -> float | None:
    """A finite float, or None (servers null-fill or omit Whisper-only fields)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer past float's range
        return None
    return number if math.isfinite(number) else None


def _time(value, duration: float) -> float | None:
    number = _number(value)
    return None if number is None else min(max(number, 0.0), duration)


def parse_verbose_json(answer, duration: float) -> ChunkResult:
    """A ``verbose_json`` transcription answer as chunk words and segments (chunk seconds, clamped into
    [0, duration]). Raises ValueError when the answer is not a JSON object."""
    if not isinstance(answer, dict):
        raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
    segments = []
    for item in answer.get("segments") or []:
        if not isinstance(item, dict):
            continue
        start, end = _time(item.get("start"), duration), _time(item.get("end"), duration)
        if start is None or end is None or end < start:
            continue
        segments.append(Segment(start=start, end=end, text=str(item.get("text") or "").strip(),
                                no_speech_prob=_number(item.get("no_speech_prob")),
                                avg_logprob=_number(item.get("avg_logprob")),
                                compression_ratio=_number(item.get("compression_ratio"))))
    words = []
    for item in (answer.get("words") or [])[:MAX_WORDS_PER_CHUNK]:
        if not isinstance(item, dict):
            continue
        text = str(item.get("word") or item.get("text") or "").strip()
        start, end = _time(item.get("start"), duration), _time(item.get("end"), duration)
        if not text or len(text) > MAX_WORD_CHARS or start is None or end is None:
            continue
        words.append(Word(text=text, start=start, end=max(start, end)))
    if not words:  # segment timestamps only: spread each segment's words over its time by their length
        for segment in segments:
            words.extend(spread_words(segment))
        words = words[:MAX_WORDS_PER_CHUNK]
    language = answer.get("language")
    return ChunkResult(words=sorted(words, key=lambda w: (w.start, w.end)), segments=segments,
                       language=language.strip() if isinstance(language, str) else "")


def spread_words(segment: Segment) -> list[Word]:
    """The words of a segment without word timestamps, each given a share of the segment's time proportional to
    its length in characters (good enough to place words in regions of several seconds)."""
    tokens = [t for t in segment.text.split() if len(t) <= MAX_WORD_CHARS]
    total = sum(len(t) for t in tokens)
    if not total:
        return []
    span = segment.end - segment.start
    words, at = [], segment.start
    for token in tokens:
        length = span * len(token) / total
        words.append(Word(text=token, start=at, end=at + length))
        at += length
    return words
