"""handle_webhook's decisions on Label Studio's payloads (shape as Label Studio 1.23.2 sends TASKS_CREATED), with a
real SQLite queue in a temp MODEL_DIR. The path through a real Label Studio is in test_prelabel.py."""

from __future__ import annotations

import logging

import pytest

from ml_backend.prelabel import worker as worker_module
from ml_backend.prelabel.jobqueue import open_queue
from ml_backend.settings import Settings
from ml_backend.prelabel.webhook import PayloadError, created_jobs, handle_webhook
from ml_backend.prelabel.worker import has_version, superseded

PAYLOAD = {  # trimmed from a real TASKS_CREATED call
    "action": "TASKS_CREATED",
    "tasks": [{"id": 7, "data": {"audio": "/data/upload/3/1a2b3c4d-a.wav"}, "project": 3, "file_upload": 11},
              {"id": 8, "data": {"audio": "/data/upload/3/5e6f7a8b-b.flac"}, "project": 3, "file_upload": 12}],
    "project": {"id": 3, "label_config": "<View/>", "model_version": ""},
}


def settings(tmp_path, **kw) -> Settings:
    base = dict(model_dir=tmp_path / "model_dir", label_studio_url="http://127.0.0.1:1",
                label_studio_api_key="t" * 40, queue_workers=0)
    base.update(kw)
    return Settings(**base)


def test_created_jobs_reads_task_and_project_ids():
    assert created_jobs(PAYLOAD) == [(3, 7), (3, 8)]
    assert created_jobs({"project": 5, "tasks": [{"id": "9"}, {"id": None}, "junk", {"id": 10.0}]}) == [(5, 9), (5, 10)]
    for bad in (True, 5.9, float("inf"), float("nan"), 1e30, -1, 0, "1e3", "12abc", [], 2**63):
        with pytest.raises(PayloadError, match="task id"):  # never truncated (5.9 -> 5) nor skipped silently
            created_jobs({"project": 5, "tasks": [{"id": bad}]})
    assert created_jobs({"tasks": [{"id": 1}]}) == []  # no project anywhere


def test_tasks_created_is_queued_once(tmp_path):
    s = settings(tmp_path)
    first = handle_webhook(PAYLOAD, s)
    assert first == {"status": "queued", "action": "TASKS_CREATED", "queued": 2, "queue_length": 2}
    again = handle_webhook(PAYLOAD, s)
    assert again["queued"] == 0 and again["queue_length"] == 2
    queue = open_queue(s)
    assert [queue.claim().task_id, queue.claim().task_id] == [7, 8]


def test_other_actions_and_empty_payloads_are_ignored(tmp_path):
    s = settings(tmp_path)
    assert handle_webhook({"action": "ANNOTATION_CREATED", "annotation": {"id": 1}}, s) == \
        {"status": "ignored", "action": "ANNOTATION_CREATED"}
    answer = handle_webhook({"action": "TASKS_CREATED", "tasks": []}, s)
    assert answer["status"] == "ignored" and "task ids" in answer["reason"]
    assert not (tmp_path / "model_dir").exists()  # nothing opened for nothing


def test_without_label_studio_credentials_nothing_is_queued(tmp_path, caplog):
    s = settings(tmp_path, label_studio_url="", label_studio_api_key="")
    with caplog.at_level(logging.WARNING, logger="ml_backend"):
        answer = handle_webhook(PAYLOAD, s)
    assert answer["status"] == "not queued" and "LABEL_STUDIO_URL" in answer["reason"]
    assert "LABEL_STUDIO_API_KEY" in caplog.text
    assert not (tmp_path / "model_dir").exists()


def test_no_worker_threads_without_credentials_or_with_zero_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_module, "_WORKERS", {})
    assert worker_module.start_background_workers(settings(tmp_path, queue_workers=0)) == []
    monkeypatch.setattr(worker_module, "_WORKERS", {})
    assert worker_module.start_background_workers(settings(tmp_path, queue_workers=2, label_studio_url="")) == []


def test_has_version_reads_sdk_objects_and_dicts():
    class P:
        model_version = "dsp-1"
        result = [{"type": "labels"}]

    assert has_version([{"model_version": "x"}, P()], "dsp-1")
    assert not has_version([{"model_version": "x"}], "dsp-1") and not has_version(None, "dsp-1")


def test_only_real_predictions_of_the_version_count():
    """A failed task's empty prediction (``-failed``, or empty under the version itself) leaves it to do."""
    real = {"id": 1, "model_version": "dsp-1", "result": [{"type": "labels"}]}
    failed = {"id": 2, "model_version": "dsp-1-failed", "result": []}
    empty = {"id": 3, "model_version": "dsp-1", "result": []}
    other = {"id": 4, "model_version": "dsp-0", "result": [{"type": "labels"}]}
    assert not has_version([failed, empty, other], "dsp-1")
    assert has_version([failed, real], "dsp-1")
    assert superseded([failed, empty, other, real], "dsp-1") == [failed, empty, real]
