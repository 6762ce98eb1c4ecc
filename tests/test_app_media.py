"""/predict on songs downloaded from Label Studio (a real local HTTP server stands in for it; ENGINE=dsp): one token
exchange per process however many tasks and requests, no client at all for local files, and a task whose download
is broken gets a ``-failed`` prediction, then a real one once the file is fixed."""

from __future__ import annotations

import pytest

from ml_backend.server.app import create_app
from ml_backend.model import get_model
from ml_backend.settings import Settings
from label_config import shipped_config
from tests import music
from tests.test_app import ls_task, predict_body
from tests.test_media import LocalServer, make_jwt, serve_token_refresh

REFRESH = "/api/token/refresh/"


@pytest.fixture
def ls_server():
    server = LocalServer()
    yield server
    server.close()


def backend(tmp_path, ls_server, token: str, **extra):
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", label_studio_url=ls_server.url,
                        label_studio_api_key=token, **extra)
    return settings, create_app(settings).test_client()


def predict(client, tasks: list[dict]) -> list[dict]:
    response = client.post("/predict", json=predict_body(tasks))
    assert response.status_code == 200
    return response.get_json()["results"]


def test_personal_access_token_is_exchanged_once_for_all_tasks_and_requests(tmp_path, ls_server, song_files):
    pat, access = make_jwt("refresh"), make_jwt("access", 300)
    serve_token_refresh(ls_server, pat, access)
    ls_server.file("/data/upload/1/aa-song.wav", song_files[".wav"].read_bytes(), token=f"Bearer {access}")
    ls_server.file("/data/upload/1/bb-song.flac", song_files[".flac"].read_bytes(), token=f"Bearer {access}")
    ls_server.file("/data/upload/1/cc-copy.wav", song_files[".wav"].read_bytes(), token=f"Bearer {access}")
    settings, client = backend(tmp_path, ls_server, pat)
    version = get_model(settings).model_version()

    first = predict(client, [ls_task(1, "/data/upload/1/aa-song.wav"), ls_task(2, "/data/upload/1/bb-song.flac")])
    second = predict(client, [ls_task(3, "/data/upload/1/cc-copy.wav")])
    for prediction in first + second:
        assert prediction["result"] and prediction["model_version"] == version
    assert [r[1] for r in ls_server.requests if r[0] == "POST"] == [REFRESH]  # not one per task
    downloads = [r for r in ls_server.requests if r[1].startswith("/data/upload/")]
    assert len(downloads) == 3 and all(r[2]["Authorization"] == f"Bearer {access}" for r in downloads)


def test_legacy_token_is_sent_as_is_without_an_exchange(tmp_path, ls_server, song_files):
    ls_server.file("/data/upload/1/aa-song.wav", song_files[".wav"].read_bytes(), token="Token legacy-key")
    settings, client = backend(tmp_path, ls_server, "legacy-key")
    [prediction] = predict(client, [ls_task(1, "/data/upload/1/aa-song.wav")])
    assert prediction["result"] and prediction["model_version"] == get_model(settings).model_version()
    assert [r[0] for r in ls_server.requests] == ["GET"]


def test_local_files_need_no_label_studio_client(tmp_path, ls_server, song_files):
    """With a document root the file is read from disk: no token exchange, no request to Label Studio."""
    (tmp_path / "docs" / "songs").mkdir(parents=True)
    (tmp_path / "docs" / "songs" / "a.wav").write_bytes(song_files[".wav"].read_bytes())
    pat, access = make_jwt("refresh"), make_jwt("access", 300)
    serve_token_refresh(ls_server, pat, access)
    settings, client = backend(tmp_path, ls_server, pat, local_files_document_root=str(tmp_path / "docs"))
    [prediction] = predict(client, [ls_task(1, "/data/local-files/?d=songs/a.wav")])
    assert prediction["result"]
    assert ls_server.requests == []
    assert get_model(settings)._ls_client is None


def test_broken_download_gets_a_failed_prediction_and_a_real_one_once_fixed(tmp_path, ls_server, song_files):
    music.make_text_as_audio(tmp_path / "notes.wav")
    ls_server.file("/data/upload/1/dd-notes.wav", (tmp_path / "notes.wav").read_bytes(), token="Token legacy-key")
    settings, client = backend(tmp_path, ls_server, "legacy-key")
    version = get_model(settings).model_version()
    [failed] = predict(client, [ls_task(4, "/data/upload/1/dd-notes.wav")])
    assert failed == {"result": [], "score": 0.0, "model_version": f"{version}-failed"}
    media = tmp_path / "model_dir" / "media"
    assert not [p for p in media.iterdir() if not p.name.startswith(".")]  # the unusable download is not kept

    ls_server.file("/data/upload/1/dd-notes.wav", song_files[".wav"].read_bytes(), token="Token legacy-key")
    [fixed] = predict(client, [ls_task(4, "/data/upload/1/dd-notes.wav")])
    assert fixed["result"] and fixed["model_version"] == version


def test_songs_over_max_audio_seconds_are_refused_with_the_reason(tmp_path, ls_server, song_files):
    """The model decodes with MAX_AUDIO_SECONDS (the 20 s song against a 5 s limit): the task fails with the
    reason, the next task of the request is predicted."""
    (tmp_path / "docs" / "songs").mkdir(parents=True)
    (tmp_path / "docs" / "songs" / "a.flac").write_bytes(song_files[".flac"].read_bytes())
    (tmp_path / "docs" / "songs" / "b.mp3").write_bytes(song_files[".mp3"].read_bytes())
    docs = str(tmp_path / "docs")
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=docs,
                        max_audio_seconds=5)
    long_flac, long_mp3 = get_model(settings).predict_tasks(
        [ls_task(1, "/data/local-files/?d=songs/a.flac"), ls_task(2, "/data/local-files/?d=songs/b.mp3")],
        shipped_config())
    for outcome in (long_flac, long_mp3):  # the soundfile and the ffmpeg paths
        assert outcome.prediction["result"] == [] and "MAX_AUDIO_SECONDS" in outcome.failure
    relaxed = Settings(engine="dsp", model_dir=tmp_path / "model_dir2", local_files_document_root=docs,
                       max_audio_seconds=60)
    [ok] = get_model(relaxed).predict_tasks([ls_task(1, "/data/local-files/?d=songs/a.flac")], shipped_config())
    assert ok.prediction["result"]
