"""The lyrics stage: the words sung in a song, in time, placed into the song's regions.

``engines`` transcribe (Whisper through transformers, or an OpenAI-compatible ``/v1/audio/transcriptions``
server) in 30 s chunks that ``chunks`` plans and stitches; ``voice`` finds where a voice is heard (Silero VAD);
``guards`` drop what Whisper is known to invent over music; ``align`` turns the kept words into each region's
lines and the song's lyrics in ACE-Step's format; ``stage`` ties them together for ``SongModel``. All times are
song seconds. Importing this package is cheap: models load on first use.
"""

from __future__ import annotations


def lyrics_parameters(settings) -> dict:
    """Everything in the settings that changes the lyrics (hashed into model_version and so into the prediction
    cache key); empty with LYRICS_ENGINE=none, so turning lyrics off keeps earlier versions valid."""
    if settings.lyrics_engine == "none":
        return {}
    return {
        "lyrics_engine": settings.lyrics_engine, "lyrics_model_id": settings.lyrics_model_id,
        "lyrics_pause_seconds": settings.lyrics_pause_seconds,
        "lyrics_no_speech_threshold": settings.lyrics_no_speech_threshold,
        "lyrics_logprob_threshold": settings.lyrics_logprob_threshold,
        "lyrics_compression_ratio_threshold": settings.lyrics_compression_ratio_threshold,
        "lyrics_max_repeats": settings.lyrics_max_repeats,
        "lyrics_min_voice_seconds": settings.lyrics_min_voice_seconds,
    }
