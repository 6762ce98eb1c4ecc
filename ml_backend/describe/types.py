"""The data every stage of the description shares: one request per audio window, one description per window.

Times are song seconds. Engines never raise for a single bad window: its description has ``ok=False`` and
``error`` set, so one failure degrades one region's text, not the song. The prompt's parser, the engines, the caption
and the merge all import these types from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from label_config.vocabulary import SECTION_LABELS


@dataclass
class WindowRequest:
    """One model call: up to 30 s of 16 kHz mono float32 audio cut from the song at [start, end) seconds."""

    audio: np.ndarray
    start: float
    end: float
    prompt: str  # the analysis template; "{window_seconds}" is filled in by the engine (prompt.window_prompt)
    labels: tuple[str, ...] = SECTION_LABELS  # the config's section labels the answer is mapped onto
    # A packed window: the song seconds [start, end) of each region's part inside it, in order; the model is asked
    # about each (prompt.fill_prompt) and answers with one description per part. Empty: one region, one answer.
    parts: tuple[tuple[float, float], ...] = ()


@dataclass
class WindowDescription:
    """What the model said about one window, parsed; list fields hold one item each."""

    section_label: str = ""  # one of the config's labels, or "" when the model gave none we know
    summary: str = ""
    genres: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    vocal_characteristics: list[str] = field(default_factory=list)
    mix_notes: list[str] = field(default_factory=list)
    vocal_language: str = ""  # a code from label_config.LANGUAGES, or ""
    notable_moments: list[tuple[float, str]] = field(default_factory=list)  # (song seconds, description)
    raw_text: str = ""  # the model's text as generated
    ok: bool = True
    error: str = ""
    # A packed window's answer: one description per part of the request, in order (the window's own fields stay
    # empty; ok is True when at least one part was described).
    parts: list["WindowDescription"] = field(default_factory=list)

    def for_parts(self, count: int) -> list["WindowDescription"]:
        """The descriptions of a window's ``count`` parts: its ``parts`` when the answer was split per part, else
        this description for each part (an engine that describes nothing, or a window that failed as a whole)."""
        if count <= 1:
            return [self]
        if len(self.parts) == count:
            return list(self.parts)
        return [self] * count

    @classmethod
    def failed(cls, error: str, raw_text: str = "") -> "WindowDescription":
        """A description for a window the model could not describe (out of memory, request failed)."""
        return cls(raw_text=raw_text, ok=False, error=error)
