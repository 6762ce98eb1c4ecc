"""Transcription engines, chosen by LYRICS_ENGINE: ``whisper`` (any Whisper checkpoint through transformers, in
this process) or ``openai`` (an OpenAI-compatible /v1/audio/transcriptions server)."""

from __future__ import annotations

from ml_backend.lyrics.engines.base import ChunkAudio, ChunkResult, LyricsEngine, LyricsEngineError

__all__ = ["ChunkAudio", "ChunkResult", "LyricsEngine", "LyricsEngineError", "create_lyrics_engine"]


def create_lyrics_engine(settings) -> LyricsEngine | None:
    """The engine LYRICS_ENGINE names (None for "none"); the whisper engine loads its model here, once per
    process. Raises LyricsEngineError with a clear message when it cannot."""
    if settings.lyrics_engine == "none":
        return None
    if settings.lyrics_engine == "whisper":
        from ml_backend.lyrics.engines.whisper_engine import WhisperEngine

        return WhisperEngine.from_settings(settings)
    if settings.lyrics_engine == "openai":
        from ml_backend.lyrics.engines.openai_engine import TranscriptionEngine

        return TranscriptionEngine.from_settings(settings)
    raise LyricsEngineError(f"LYRICS_ENGINE={settings.lyrics_engine!r}: use none, whisper or openai")
