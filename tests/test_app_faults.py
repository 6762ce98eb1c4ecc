"""Bad input in one /predict batch (issue 3, section 6): every task gets a prediction in order, bad ones empty with
a log line naming the task, good ones predicted, and the answer is 200. Real files (tests/music.py helpers), a
real slow HTTP server for the fetch timeout, ENGINE=dsp."""

from __future__ import annotations

import http.server
import shutil
import threading
import time

import pytest
from label_studio_sdk.label_interface import LabelInterface

from label_config import names as n, shipped_config
from ml_backend.server.app import create_app
from ml_backend.model import get_model
from ml_backend.settings import Settings
from tests import music
from tests.test_app import local_ref, ls_task, predict_body

SLOW_SECONDS = 5.0  # the slow server's delay; FETCH_TIMEOUT is far below it


@pytest.fixture
def slow_server():
    """An HTTP server that waits SLOW_SECONDS before answering (a stalled media host)."""

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(SLOW_SECONDS)
            try:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"\0" * 1000)
            except OSError:
                pass  # the client gave up, as it should

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def bad_media(tmp_path, song_files):
    root = tmp_path / "documents"
    songs = root / "songs"
    songs.mkdir(parents=True)
    shutil.copy(song_files[".wav"], songs / "good.wav")
    shutil.copy(song_files[".opus"], songs / "good.opus")
    music.make_empty(songs / "empty.mp3")
    music.make_silence(songs / "silence.wav", seconds=12.0)
    music.make_clip(songs / "clip.wav", song_files[".wav"], seconds=1.0)
    music.make_corrupt_header(songs / "corrupt.wav", song_files[".wav"])  # no RIFF header: undecodable
    music.make_corrupt_header(songs / "corrupt.flac", song_files[".flac"])  # ffmpeg may resync to the frames
    music.make_text_as_audio(songs / "notes.wav")
    music.make_midi(songs / "song.mid")
    return root


def test_bad_tasks_do_not_cost_the_good_ones(tmp_path, bad_media, slow_server, caplog):
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(bad_media),
                        fetch_timeout=0.5, allowed_media_hosts="127.0.0.1")  # the slow server is on loopback
    client = create_app(settings).test_client()
    bad = {
        101: local_ref("empty.mp3"),
        102: local_ref("corrupt.wav"),
        103: local_ref("notes.wav"),  # text under an audio name
        104: local_ref("song.mid"),  # an unsupported format
        105: f"{slow_server}/slow.mp3",  # times out
        106: local_ref("missing.wav"),
    }
    tasks = [ls_task(1, local_ref("good.wav"))]
    tasks += [ls_task(tid, ref) for tid, ref in bad.items()]
    tasks += [ls_task(2, local_ref("silence.wav")), ls_task(3, local_ref("clip.wav")),
              ls_task(4, local_ref("good.opus")), ls_task(5, local_ref("corrupt.flac")),
              {"id": 107, "data": {"text": "no audio here"}}]
    response = client.post("/predict", json=predict_body(tasks))
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == len(tasks)
    by_id = {task["id"]: result for task, result in zip(tasks, results)}
    interface = LabelInterface(shipped_config())
    version = get_model(settings).model_version()

    for tid in (1, 4):  # the good songs
        labels = [r for r in by_id[tid]["result"] if r["from_name"] == n.SECTION]
        assert labels and by_id[tid]["score"] > 0
        assert by_id[tid]["model_version"] == version
    for tid in list(bad) + [107]:
        assert by_id[tid]["result"] == [] and by_id[tid]["score"] == 0, tid
        # not the current version: Label Studio, preannotate and the worker must not count the task as done
        assert by_id[tid]["model_version"] == f"{version}-failed", tid
        assert f"task {tid}:" in caplog.text, tid
    # Silence, a 1-second clip and a FLAC with a damaged header decode: whatever they get is valid and in range,
    # or (the FLAC, when the decoder cannot resync) an empty prediction with its log line.
    for tid, seconds in ((2, 12.0), (3, 1.0), (5, 23.0)):
        assert interface.validate_prediction(by_id[tid])
        assert by_id[tid]["result"] or f"task {tid}:" in caplog.text
        for r in by_id[tid]["result"]:
            if "start" in r["value"]:
                assert 0 <= r["value"]["start"] < r["value"]["end"] <= seconds + 1e-3
    assert by_id[2]["result"] and by_id[3]["result"]
    slow_lines = [r.getMessage() for r in caplog.records if "task 105:" in r.getMessage()]
    assert any("time" in line.lower() for line in slow_lines), slow_lines  # failed by the timeout, not the junk
    assert "Traceback" not in response.get_data(as_text=True)


def test_hour_long_file(tmp_path, song_files):
    root = tmp_path / "documents"
    long_file = music.make_long(root / "songs", song_files[".wav"], hours=1.0, suffix=".flac")
    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(root),
                        max_audio_seconds=7200)  # the file is an hour plus part of a repeat
    client = create_app(settings).test_client()
    response = client.post("/predict", json=predict_body([ls_task(9, local_ref(long_file.name))]))
    prediction = response.get_json()["results"][0]
    regions = [r for r in prediction["result"] if r["from_name"] == n.SECTION]
    assert regions
    assert max(r["value"]["end"] for r in regions) > 3000  # regions cover the hour, not just its start
    assert all(0 <= r["value"]["start"] < r["value"]["end"] <= 3600 + 30 for r in regions)


def test_a_failed_task_carries_its_reason_to_the_worker(tmp_path, bad_media):
    """The model returns why each task failed (no log capture): the queue worker and preannotate report that
    reason for the task, and a good task in the same request is predicted."""
    from ml_backend.prelabel.worker import JobFailed, predict_and_post

    settings = Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(bad_media))
    model = get_model(settings)
    tasks = [ls_task(1, local_ref("good.wav")), ls_task(103, local_ref("notes.wav")),
             ls_task(106, local_ref("missing.wav"))]
    good, notes, missing = model.predict_tasks(tasks, shipped_config())
    assert good.prediction["result"] and good.failure == ""
    assert notes.prediction["result"] == [] and "notes.wav" in notes.failure
    assert missing.prediction["result"] == [] and "missing.wav" in missing.failure
    assert not notes.failure.startswith("task ")  # the task is named once, by whoever prints the reason

    class NoPosting:
        class predictions:
            @staticmethod
            def create(**_):
                raise AssertionError("a failed task must not be posted")

    with pytest.raises(JobFailed) as failed:
        predict_and_post(model, NoPosting(), ls_task(106, local_ref("missing.wav")), shipped_config())
    assert str(failed.value) == missing.failure
