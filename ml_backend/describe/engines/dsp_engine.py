"""ENGINE=dsp: no language model. Regions, labels from repetition, BPM and key come from the music analysis;
the windows get empty descriptions and the caption comes from ``caption.fallback_caption``."""

from __future__ import annotations

from ml_backend.describe.types import WindowDescription, WindowRequest


class DspEngine:
    """An engine that describes nothing, for machines without a GPU."""

    name = "dsp"
    model_id = "none"

    def parameters(self) -> dict:
        """No sampling: nothing to hash."""
        return {}

    def describe_windows(self, requests: list[WindowRequest]) -> list[WindowDescription]:
        """One empty, successful description per window."""
        return [WindowDescription() for _ in requests]

    def summarize(self, text_prompt: str) -> str | None:
        """No language model, no caption: the caller falls back to the deterministic one."""
        return None
