"""Session fixtures shared across test modules. Module-specific fixtures live in the modules (or in a
sub-folder's conftest.py), so this file stays small."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny, randomly initialised Qwen2-Audio saved with save_pretrained (no downloads)."""
    from tests.tiny_model import build_tiny_qwen2_audio

    return build_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


@pytest.fixture(scope="session")
def song_files(tmp_path_factory):
    """One short song rendered from MIDI with fluidsynth, in several formats: {".wav": Path, ".flac": ...}."""
    from tests.music import render_format_set

    return render_format_set(tmp_path_factory.mktemp("songs"))
