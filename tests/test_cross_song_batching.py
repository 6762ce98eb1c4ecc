"""Cross-song batching: the songs of jobs that wait for the model at the same moment go to the engine in ONE call
(``worker.SongBatcher``, used by the queue worker and ``preannotate``), and each song's prediction is posted on
its own task: results land on the right tasks, and a bad task fails alone.

The model is the real ``SongModel`` (real decode, analysis, packing, merge) with a recording engine that answers
with the real parser; Label Studio's client is a recorder of ``predictions.create`` calls (the worker's and
preannotate's end-to-end runs against a real Label Studio live in tests/e2e)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from label_config import shipped_config
from ml_backend.describe.prompt import describe_answer
from ml_backend.model import SongModel
from ml_backend.prelabel.worker import JobFailed, SongBatcher, predict_and_post_many
from ml_backend.settings import Settings
from tests.test_app import local_ref, ls_task

LENGTHS = {11: 8.0, 12: 14.0, 13: 20.5}  # task id -> seconds of its song (cut from one rendered song)


class RecordingEngine:
    """Answers every window from its request (a summary naming its song seconds) and records each call."""

    name = "recording"
    model_id = "recording"

    def __init__(self, delay: float = 0.0):
        self.calls: list[list] = []
        self.delay = delay

    def parameters(self) -> dict:
        return {}

    def describe_windows(self, requests):
        self.calls.append(list(requests))
        time.sleep(self.delay)
        out = []
        for req in requests:
            spans = req.parts or ((req.start, req.end),)
            items = [{"part": n, "summary": f"Heard {a:.1f} to {b:.1f} s."} for n, (a, b) in enumerate(spans, 1)]
            out.append(describe_answer(json.dumps({"parts": items}) if req.parts else json.dumps(items[0]), req))
        return out

    def summarize(self, text_prompt):
        return None


class RecordingClient:
    """label-studio-sdk's ``client.predictions``: records what is posted, per task."""

    def __init__(self):
        self.posted: dict[int, dict] = {}
        outer = self

        class Predictions:
            @staticmethod
            def create(task, result, score, model_version):
                assert task not in outer.posted, "a task was posted twice"
                outer.posted[task] = {"result": result, "score": score, "model_version": model_version}

            @staticmethod
            def delete(id):
                pass

        self.predictions = Predictions()


@pytest.fixture
def songs(tmp_path, song_files):
    """LOCAL_FILES_DOCUMENT_ROOT with three songs of different lengths, one per task id in LENGTHS."""
    root = tmp_path / "documents"
    (root / "songs").mkdir(parents=True)
    y, sr = sf.read(song_files[".wav"], dtype="float32")
    assert len(y) / sr >= max(LENGTHS.values())
    for task_id, seconds in LENGTHS.items():
        sf.write(root / "songs" / f"song{task_id}.wav", y[:int(seconds * sr)], sr)
    return root


def _model(tmp_path, root, engine) -> SongModel:
    model = SongModel(Settings(engine="dsp", model_dir=tmp_path / "model_dir", local_files_document_root=str(root)))
    model._engine = engine
    return model


def _song_end(posted: dict) -> float:
    return max(r["value"]["end"] for r in posted["result"] if "end" in r.get("value", {}))


def _notes(posted: dict) -> list[str]:
    return [r["value"]["text"][0] for r in posted["result"] if "start" in r["value"] and "text" in r["value"]]


def test_waiting_songs_share_one_engine_call_and_land_on_their_tasks(tmp_path, songs):
    engine = RecordingEngine()
    model = _model(tmp_path, songs, engine)
    client = RecordingClient()
    batcher = SongBatcher(songs_per_call=4)
    tasks = [ls_task(task_id, local_ref(f"song{task_id}.wav")) for task_id in LENGTHS]
    outcomes: dict[int, object] = {}

    def submit(task):
        outcomes[task["id"]] = batcher.predict_and_post(model, client, task, shipped_config())

    with batcher._model_lock:  # the model is busy: all three jobs arrive and wait, as in a busy queue
        threads = [threading.Thread(target=submit, args=(t,)) for t in tasks]
        for t in threads:
            t.start()
        for _ in range(500):
            if len(batcher._waiting) == 3:
                break
            time.sleep(0.01)
        assert len(batcher._waiting) == 3
    for t in threads:
        t.join(60)
    assert len(batcher.calls) == 1 and sorted(batcher.calls[0]) == sorted(LENGTHS)
    assert len(engine.calls) == 1  # the windows of the three songs went to the engine together
    assert {o.status for o in outcomes.values()} == {"posted"}
    assert sorted(client.posted) == sorted(LENGTHS)
    for task_id, seconds in LENGTHS.items():
        posted = client.posted[task_id]
        assert _song_end(posted) == pytest.approx(seconds, abs=0.05)  # this task's song, not another's
        for note in _notes(posted):  # every note quotes windows inside this song
            for part in note.split("Heard ")[1:]:
                start, end = (float(x) for x in part.split(" s.")[0].split(" to "))
                assert 0 <= start < end <= seconds + 0.05
    windows = sum(len(c) for c in engine.calls)
    assert windows == model.stats.windows


def test_a_bad_task_in_the_group_fails_alone(tmp_path, songs):
    engine = RecordingEngine()
    model = _model(tmp_path, songs, engine)
    client = RecordingClient()
    tasks = [ls_task(11, local_ref("song11.wav")), ls_task(99, local_ref("missing.wav")),
             ls_task(13, local_ref("song13.wav"))]
    first, missing, last = predict_and_post_many(model, client, tasks, shipped_config())
    assert first.status == "posted" and last.status == "posted"
    assert isinstance(missing, JobFailed) and "missing.wav" in str(missing)
    assert sorted(client.posted) == [11, 13] and len(engine.calls) == 1
    assert _song_end(client.posted[11]) == pytest.approx(8.0, abs=0.05)
    assert _song_end(client.posted[13]) == pytest.approx(20.5, abs=0.05)
    # a task that already holds this version's prediction is skipped, not predicted
    done = ls_task(12, local_ref("song12.wav"))
    done["predictions"] = [{"id": 5, "model_version": model.model_version(), "result": [{"x": 1}]}]
    (skipped,) = predict_and_post_many(model, client, [done], shipped_config())
    assert skipped.status == "skipped" and 12 not in client.posted


def test_preannotate_batches_the_songs_waiting_for_the_model(tmp_path, songs):
    from ml_backend.prelabel.preannotate import run

    engine = RecordingEngine(delay=0.5)  # the first call keeps the model busy while the others arrive
    model = _model(tmp_path, songs, engine)
    client = RecordingClient()
    tasks = [ls_task(task_id, local_ref(f"song{task_id}.wav")) for task_id in LENGTHS]
    reported = []
    summary = run(model, client, tasks, shipped_config(), concurrency=3, report=reported.append)
    assert summary.posted == 3 and not summary.failed
    assert sorted(o.task_id for o in reported) == sorted(LENGTHS)
    assert len(engine.calls) < 3  # at least two songs shared a call
    for task_id, seconds in LENGTHS.items():
        assert _song_end(client.posted[task_id]) == pytest.approx(seconds, abs=0.05)
    called = sorted({len(r.audio) for call in engine.calls for r in call})
    assert called and np.all(np.array(called) > 0)


def test_the_batchers_record_of_calls_stays_bounded():
    from ml_backend.prelabel.worker import RECENT_CALLS, SongBatcher

    class Model:
        def model_version(self):
            return "v"

        def predict_tasks(self, tasks, label_config):
            raise RuntimeError("no model here")  # every call fails: the record is kept all the same

    batcher = SongBatcher()
    for n in range(RECENT_CALLS + 50):  # a backend answers jobs for months
        with pytest.raises(RuntimeError):
            batcher.predict_and_post(Model(), None, {"id": n}, "<View/>")
    assert len(batcher.calls) == RECENT_CALLS and batcher.calls[-1] == [RECENT_CALLS + 49]
