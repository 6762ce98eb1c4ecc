"""Shared vocabulary of ls-acestep: the labeling config, its control names, allowed values and the sidecar schema.

Both the backend (``ml_backend``) and the converter (``converters``) import from here; nothing here does I/O
beyond reading the shipped XML.
"""

from . import names
from .render import SHIPPED_CONFIG, render_config, shipped_config
from .sidecar import Region, SongAnnotation, assemble_lyrics, lyrics_file_text, to_sidecar
from .vocabulary import (
    KEYSCALES, LANGUAGES, SECTION_LABELS, TIME_SIGNATURES, normalize_bpm, normalize_keyscale,
    normalize_language, normalize_section_label, normalize_timesignature,
)

__all__ = [
    "names", "SHIPPED_CONFIG", "render_config", "shipped_config", "Region", "SongAnnotation",
    "assemble_lyrics", "lyrics_file_text", "to_sidecar", "KEYSCALES", "LANGUAGES", "SECTION_LABELS",
    "TIME_SIGNATURES", "normalize_bpm", "normalize_keyscale", "normalize_language",
    "normalize_section_label", "normalize_timesignature",
]
