"""What the transcription engines return and the lyrics stage works on. Times are song seconds."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    """One transcribed word (punctuation attached as written) and where it is sung."""

    text: str
    start: float
    end: float

    @property
    def mid(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass
class Segment:
    """A stretch of the transcript with the decoder's own confidence figures (Whisper's, or a server's
    ``verbose_json`` segment). ``None`` where the engine or server did not give a figure."""

    start: float
    end: float
    text: str = ""
    no_speech_prob: float | None = None  # probability of <|nospeech|> at the start of the chunk
    avg_logprob: float | None = None  # mean log-probability of the written tokens
    compression_ratio: float | None = None  # bytes of text / bytes zlib-compressed: high = repetitive


@dataclass
class Transcript:
    """One song's transcription: its words in time order, the segments they came from, the language Whisper
    detected (a Whisper code or name, as the engine gave it) and whether the engine worked at all."""

    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    language: str = ""
    ok: bool = True
    error: str = ""
    voice: object = None  # voice.VoiceActivity of the song, when it was measured

    @classmethod
    def failed(cls, error: str) -> "Transcript":
        """The transcript of a song the engine could not transcribe (its regions get no lyrics; not cached)."""
        return cls(ok=False, error=error)
