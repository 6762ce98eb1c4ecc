"""`ls-acestep up` turns lyrics on where they are affordable: with a GPU (Whisper beside the description model) or
a transcription server, off on the CPU; and says which in its start-up lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_backend.studio import up


@pytest.fixture
def gpu(monkeypatch):
    import torch

    def set_gpu(present: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: present)

    return set_gpu


def test_lyrics_follow_the_gpu_the_server_url_or_the_environment(gpu):
    gpu(False)
    lyrics, why = up.choose_lyrics({})
    assert lyrics == "none" and "no GPU" in why and "LYRICS_ENGINE=whisper" in why
    assert up.choose_lyrics({"LYRICS_BASE_URL": "http://whisper:8000/v1"})[0] == "openai"
    gpu(True)
    assert up.choose_lyrics({}) == ("whisper", "a GPU is present")
    assert up.choose_lyrics({"LYRICS_ENGINE": " None "}) == ("none", "from LYRICS_ENGINE in the environment")


def test_the_start_up_lines_say_whether_lyrics_are_on():
    state = up.UpState(username="admin@localhost", password="pw", token="t", project_id=3)
    lines = up.summary_lines(up.Layout(Path("/data")), state, "http://127.0.0.1:8080", "http://127.0.0.1:9090",
                             "dsp", "no GPU", False, "none", "no GPU found: no lyrics")
    assert "Lyrics:       LYRICS_ENGINE=none (no GPU found: no lyrics)" in lines
