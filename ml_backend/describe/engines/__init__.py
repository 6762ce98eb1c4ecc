"""Model engines, chosen by the ENGINE setting: ``transformers`` (local Qwen model), ``openai`` (an
OpenAI-compatible server such as vLLM) or ``dsp`` (no model)."""

from __future__ import annotations

from ml_backend.describe.engines.base import Engine, EngineError, WindowDescription, WindowRequest

__all__ = ["Engine", "EngineError", "WindowDescription", "WindowRequest", "create_engine"]


def create_engine(settings) -> Engine:
    """Build the engine ``settings.engine`` names. The transformers engine loads its model here (once per
    process); the others are cheap. Raises EngineError with a clear message when the model cannot be loaded."""
    if settings.engine == "dsp":
        from ml_backend.describe.engines.dsp_engine import DspEngine

        return DspEngine()
    if settings.engine == "openai":
        from ml_backend.describe.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    if settings.engine == "transformers":
        from ml_backend.describe.engines.transformers_engine import TransformersEngine

        return TransformersEngine.from_settings(settings)
    raise EngineError(f"ENGINE={settings.engine!r}: use transformers, openai or dsp")
