"""A repeated /predict of the same song is served from the prediction cache: counted by the cache and the model's
counters (not by timing), across a new SongModel (a restart) and for a re-upload under another name."""

from __future__ import annotations

import shutil

from label_config import render_config
from ml_backend.server.app import create_app
from ml_backend.model import SongModel, get_model
from ml_backend.settings import Settings
from tests.test_app import local_ref, ls_task, predict_body


def test_second_predict_is_a_cache_hit_and_survives_a_restart(tmp_path, song_files):
    root = tmp_path / "documents"
    (root / "songs").mkdir(parents=True)
    shutil.copy(song_files[".wav"], root / "songs" / "a.wav")
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(root))
    client = create_app(settings).test_client()
    model = get_model(settings)

    first = client.post("/predict", json=predict_body([ls_task(1, local_ref("a.wav"))])).get_json()["results"]
    assert (model.stats.predictions, model.cache.stats.hits, model.cache.stats.writes) == (1, 0, 1)
    again = client.post("/predict", json=predict_body([ls_task(1, local_ref("a.wav"))])).get_json()["results"]
    assert again == first
    assert (model.stats.predictions, model.cache.stats.hits) == (1, 1)  # nothing analysed the second time
    assert "ls_acestep_cache_hits_total 1" in client.get("/metrics").get_data(as_text=True)

    shutil.copy(root / "songs" / "a.wav", root / "songs" / "renamed.wav")  # same bytes, another name
    restarted = SongModel(settings)
    body = predict_body([ls_task(2, local_ref("renamed.wav"))])
    assert restarted.predict(body["tasks"], body["label_config"]) == first
    assert (restarted.stats.predictions, restarted.cache.stats.hits) == (0, 1)

    other_config = render_config(section_labels=("Verse", "Chorus"))  # another label set: predicted again
    restarted.predict(body["tasks"], other_config)
    assert (restarted.stats.predictions, restarted.cache.stats.misses) == (1, 1)


def test_same_song_twice_in_one_request_is_predicted_once(tmp_path, song_files):
    root = tmp_path / "documents"
    (root / "songs").mkdir(parents=True)
    shutil.copy(song_files[".wav"], root / "songs" / "a.wav")
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(root))
    model = SongModel(settings)
    body = predict_body([ls_task(1, local_ref("a.wav")), ls_task(2, local_ref("a.wav"))])
    one, two = model.predict(body["tasks"], body["label_config"])
    assert one == two and one["result"]
    assert model.stats.predictions == 1


def test_a_request_larger_than_the_audio_budget_is_split(tmp_path, song_files, monkeypatch):
    import ml_backend.model as model_module

    root = tmp_path / "documents"
    (root / "songs").mkdir(parents=True)
    for suffix in (".wav", ".opus", ".flac"):
        shutil.copy(song_files[suffix], root / "songs" / f"a{suffix}")
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(root))
    monkeypatch.setattr(model_module, "MAX_PENDING_AUDIO_SECONDS", 30.0)  # about one song per engine call
    model = SongModel(settings)
    body = predict_body([ls_task(i, local_ref(f"a{s}")) for i, s in enumerate((".wav", ".opus", ".flac"))])
    results = model.predict(body["tasks"], body["label_config"])
    assert len(results) == 3 and all(r["result"] for r in results)
    assert model.stats.predictions == 3 and model.stats.engine_calls == 2  # 22 s + 22 s pass the 30 s budget
