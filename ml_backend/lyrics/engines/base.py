"""What a transcription engine is: it takes audio chunks of at most 30 s and returns each chunk's words and
segments in chunk seconds. Chunking, stitching and guards are the stage's work (``ml_backend.lyrics``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ml_backend.lyrics.types import Segment, Word


@dataclass
class ChunkAudio:
    """One piece of one song: ``audio`` is 16 kHz mono float32, at most 30 s; ``song`` tells the songs of one
    call apart (the Whisper engine detects one language per song)."""

    song: int
    audio: np.ndarray


@dataclass
class ChunkResult:
    """What the transcriber wrote for one chunk; times are seconds from the chunk's start."""

    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    language: str = ""  # the language code or name the transcriber gave, "" when none
    ok: bool = True
    error: str = ""

    @classmethod
    def failed(cls, error: str) -> "ChunkResult":
        return cls(ok=False, error=error)


@runtime_checkable
class LyricsEngine(Protocol):
    name: str  # "whisper" | "openai"
    model_id: str

    def transcribe_chunks(self, chunks: list[ChunkAudio]) -> list[ChunkResult]:
        """One result per chunk, same order; never raises for one bad chunk."""
        ...


class LyricsEngineError(RuntimeError):
    """The transcription engine cannot start (model missing, bad configuration); the message says what to do."""
