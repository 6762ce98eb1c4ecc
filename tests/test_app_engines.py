"""/predict through model engines: the REAL transformers engine with the tiny random Qwen2-Audio (garbage text,
several windows batched), and the openai engine against a local stand-in for vLLM whose answers we script per
window (one window fails, one answers well, one answers prose), to check that one window's failure degrades that
region's text and not the song."""

from __future__ import annotations

import base64
import io
import json
import shutil
import wave

import pytest
from label_studio_sdk.label_interface import LabelInterface

from label_config import names as n, shipped_config
from ml_backend.server.app import create_app
from ml_backend.model import SongModel, get_model
from ml_backend.settings import Settings
from tests.openai_standin import OpenAIStandIn, completion, has_audio
from tests.test_app import local_ref, ls_task, predict_body


@pytest.fixture
def documents(tmp_path, song_files):
    root = tmp_path / "documents"
    (root / "songs").mkdir(parents=True)
    shutil.copy(song_files[".wav"], root / "songs" / "song.wav")
    return root


def test_predict_with_the_tiny_transformers_model(tmp_path, documents, tiny_model_dir):
    settings = Settings(engine="transformers", model_id=str(tiny_model_dir), device="cpu", batch_size=3,
                        max_new_tokens=12, segmentation="fixed", segment_seconds=8.0, overlap_seconds=1.0,
                        model_dir=tmp_path / "model_dir", local_files_document_root=str(documents))
    client = create_app(settings).test_client()
    assert client.get("/health").get_json()["model_id"] == str(tiny_model_dir)
    response = client.post("/predict", json=predict_body([ls_task(1, local_ref("song.wav"))]))
    assert response.status_code == 200
    prediction = response.get_json()["results"][0]
    model = get_model(settings)
    assert model.loaded and model.stats.windows >= 3  # several windows went through generate together
    assert model.stats.failures == 0
    assert LabelInterface(shipped_config()).validate_prediction(prediction)
    regions = [r for r in prediction["result"] if r["from_name"] == n.SECTION]
    assert len(regions) >= 3  # garbage text: labels come from the analysis, the regions stay
    caption = [r for r in prediction["result"] if r["from_name"] == n.CAPTION]
    assert caption and caption[0]["value"]["text"][0].strip()
    assert prediction["model_version"].startswith(f"transformers-{tiny_model_dir.name}-")


GOOD_ANSWER = json.dumps({
    "section_label": "Chorus", "summary": "Full band with a bright synth lead.",
    "genre": ["synth-pop"], "instruments": ["synth lead", "drums"], "effects": ["reverb"],
    "vocal_characteristics": [], "mix_notes": ["wide"], "vocal_language": "none",
    "notable_moments": [{"time_sec": 2.0, "description": "snare fill"}],
})


def wav_seconds(data_b64: str) -> float:
    with wave.open(io.BytesIO(base64.b64decode(data_b64))) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture
def scripted_server():
    """A local chat-completions server: the window starting the song fails (HTTP 400), the second window gets a
    good JSON answer, later windows get prose; text-only requests (the caption) get a caption. Records bodies."""
    seen: list[dict] = []

    def reply(body, _n):
        seen.append(body)
        windows_before = sum(1 for b in seen[:-1] if has_audio(b))
        if has_audio(body) and windows_before == 0:
            return 400, {"error": {"message": "audio too short for this model"}}, 0
        if has_audio(body) and windows_before == 1:
            text = GOOD_ANSWER
        elif has_audio(body):
            text = "It sounds like music with some instruments playing."
        else:
            text = "Bright synth-pop with a driving beat and a shimmering synth lead."
        return 200, completion(text, model=body["model"]), 0

    with OpenAIStandIn(reply) as server:
        yield server.url, seen


def test_one_failed_window_degrades_its_region_not_the_song(tmp_path, documents, scripted_server):
    base_url, seen = scripted_server
    settings = Settings(engine="openai", model_id="Qwen/Qwen2-Audio-7B-Instruct", openai_base_url=base_url,
                        max_concurrency=1, max_retries=0, segmentation="fixed", segment_seconds=8.0,
                        overlap_seconds=1.0, model_dir=tmp_path / "model_dir",
                        local_files_document_root=str(documents))
    model = SongModel(settings)
    body = predict_body([ls_task(7, local_ref("song.wav"))])
    prediction = model.predict(body["tasks"], body["label_config"])[0]

    window_bodies = [b for b in seen if isinstance(b["messages"][0]["content"], list)]
    assert len(window_bodies) >= 3 and all(wav_seconds(b["messages"][0]["content"][0]["input_audio"]["data"]) <= 8.01
                                           for b in window_bodies)
    regions = {}
    for r in prediction["result"]:
        if "start" in r["value"]:
            regions.setdefault(r["id"], {})[r["from_name"]] = r["value"]
    ordered = sorted(regions.values(), key=lambda v: v[n.SECTION]["start"])
    assert n.SEGMENT_NOTES not in ordered[0]  # the failed window: its region keeps only its label
    assert n.SECTION in ordered[0]
    assert ordered[1][n.SECTION]["labels"] == ["Chorus"]
    assert ordered[1][n.SEGMENT_NOTES]["text"][0].startswith("Full band with a bright synth lead.")
    assert "At 0:" in ordered[1][n.SEGMENT_NOTES]["text"][0]  # the notable moment, in song time
    song = {r["from_name"]: r["value"] for r in prediction["result"] if "start" not in r["value"]}
    assert song[n.GENRE] == {"text": ["synth-pop"]}
    assert song[n.CAPTION]["text"] == ["Bright synth-pop with a driving beat and a shimmering synth lead."]
    assert 0 < prediction["score"] < 1
    # A degraded song is not cached: the next request asks the model again.
    model.predict(body["tasks"], body["label_config"])
    assert model.cache.stats.hits == 0 and model.stats.predictions == 2


def test_a_model_that_cannot_load_leaves_analysis_only_predictions(tmp_path, documents):
    wrong = tmp_path / "not-qwen"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"model_type": "bert"}))  # a real model type, not an audio LM
    settings = Settings(engine="transformers", model_id=str(wrong), device="cpu", model_dir=tmp_path / "model_dir",
                        local_files_document_root=str(documents))
    client = create_app(settings).test_client()
    response = client.post("/predict", json=predict_body([ls_task(1, local_ref("song.wav"))]))
    assert response.status_code == 200
    prediction = response.get_json()["results"][0]
    assert [r for r in prediction["result"] if r["from_name"] == n.SECTION]  # regions from the analysis
    assert not [r for r in prediction["result"] if r["from_name"] == n.SEGMENT_NOTES]
    assert prediction["score"] == 0
    health = client.get("/health").get_json()
    assert "bert" in health["model_error"] and health["model_loaded"] is False
    assert get_model(settings).cache.stats.writes == 0  # retried once the model is fixed, not served from cache
