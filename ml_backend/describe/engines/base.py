"""What every engine is: an object that describes audio windows (``ml_backend.describe.types``) and writes a caption."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ml_backend.describe.types import WindowDescription, WindowRequest


@runtime_checkable
class Engine(Protocol):
    """A model that describes audio windows and writes a song caption from text."""

    name: str  # "transformers" | "openai" | "dsp"
    model_id: str

    def parameters(self) -> dict:
        """Everything that changes the output besides the prompt (sampling, lengths); hashed into model_version."""
        ...

    def describe_windows(self, requests: list[WindowRequest]) -> list[WindowDescription]:
        """One description per request, in the same order; never raises for one bad window."""
        ...

    def summarize(self, text_prompt: str) -> str | None:
        """A text-only completion (the song caption); ``None`` when the engine has no language model or it failed."""
        ...


class EngineError(RuntimeError):
    """The engine cannot start (model missing, bad configuration); the message says what to do."""
