"""Pre-labeling on import against a real Label Studio: importing songs into a project with the backend connected
makes Label Studio send TASKS_CREATED to /webhook; the backend queues the tasks and its worker posts predictions,
with nobody opening a task. Broken files are retried and then reported; replays add no duplicates (these run on the
Redis queue when redis-server is installed); queued work survives a backend restart (the SQLite queue)."""

from __future__ import annotations

import requests

import pytest

from tests.music import make_text_as_audio

from .servers import (connect_backend, create_project, task_ids_by_file, task_predictions, upload_files,
                      wait_until)

pytestmark = pytest.mark.labelstudio


def predict_calls(backend) -> int:
    """How many /predict requests the backend has served (its /metrics counters)."""
    body = requests.get(backend.url + "/metrics?format=json", timeout=10).json()
    return body["requests"].get("/predict", 0)


def test_import_prelabels_retries_and_reports_failures(label_studio, dsp_backend, song_files, tmp_path):
    project_id = create_project(label_studio, "pre-label on import")
    connect_backend(label_studio, project_id, dsp_backend)
    version = dsp_backend.health()["model_version"]
    calls_before = predict_calls(dsp_backend)
    broken = make_text_as_audio(tmp_path / "notes.wav")
    task_ids = upload_files(label_studio, project_id, [song_files[".wav"], song_files[".flac"], broken])
    by_name = task_ids_by_file(label_studio, project_id)
    good, bad = [by_name["song.wav"], by_name["song.flac"]], by_name["notes.wav"]

    wait_until(lambda: all(task_predictions(label_studio, t) for t in good), 120,
               "the worker to post predictions for the imported songs")
    for t in good:
        predictions = task_predictions(label_studio, t)
        assert [p.model_version for p in predictions] == [version]
        assert any(item["from_name"] == "section" for item in predictions[0].result)

    # the broken file: tried MAX_ATTEMPTS=2 times (5 s apart), then listed in /health, the queue drained
    health = wait_until(lambda: (h := dsp_backend.health())["queue_length"] == 0 and h.get("failed_tasks") and h,
                        60, "the broken task to be reported as failed")
    failed = {f["task_id"]: f for f in health["failed_tasks"]}
    assert bad in failed and failed[bad]["attempts"] == 2 and failed[bad]["project_id"] == project_id
    assert "notes.wav" in failed[bad]["error"] or "decode" in failed[bad]["error"].lower(), failed[bad]["error"]
    assert not task_predictions(label_studio, bad)
    assert predict_calls(dsp_backend) == calls_before, "predictions came through /predict, not the queue"

    # Label Studio sends the same event again (or another import overlaps): no second prediction
    replay = {"action": "TASKS_CREATED", "project": {"id": project_id},
              "tasks": [{"id": t, "project": project_id, "data": {}} for t in good]}
    answer = requests.post(dsp_backend.url + "/webhook", json=replay, timeout=10).json()
    assert answer["status"] == "queued" and answer["queued"] == 2
    wait_until(lambda: dsp_backend.health()["queue_length"] == 0, 60, "the replayed jobs to be worked off")
    assert [len(task_predictions(label_studio, t)) for t in good] == [1, 1]
    assert dsp_backend.health()["queue"]["done"] >= 4
    if "QUEUE_URL" in dsp_backend.env:  # the jobs went through Redis, not a SQLite file
        assert not (dsp_backend.model_dir / "prelabel_queue.sqlite3").exists()


def test_queued_work_survives_a_backend_restart(label_studio, start_backend, song_files):
    """SQLite in MODEL_DIR (the default store; the Redis store's persistence and claims are tested against a real
    redis-server in test_jobqueue.py, without paying for two more backend starts here)."""
    backend = start_backend("restart", ENGINE="dsp", QUEUE_WORKERS="0")  # takes webhooks, works nothing off
    project_id = create_project(label_studio, "restart")
    connect_backend(label_studio, project_id, backend)
    task_ids = upload_files(label_studio, project_id, [song_files[".ogg"], song_files[".mp3"]])
    wait_until(lambda: backend.health()["queue_length"] == 2, 30, "both imported tasks to be queued")
    assert not any(task_predictions(label_studio, t) for t in task_ids)

    backend.stop()
    backend.env["QUEUE_WORKERS"] = "1"  # the same MODEL_DIR (or Redis), now with a worker
    backend.start()
    wait_until(lambda: all(task_predictions(label_studio, t) for t in task_ids), 120,
               "the restarted backend to work off the queued tasks")
    assert [len(task_predictions(label_studio, t)) for t in task_ids] == [1, 1]
    assert backend.health()["queue_length"] == 0
    backend.stop()
