"""The pre-labeling queue against a real Label Studio when one imported task's audio sits on a host that trickles a
byte a second: the worker goes on with the songs imported after it, and the trickling task fails at FETCH_TIMEOUT
(listed in /health) with its connection closed. The hostile host is on loopback (tests/security/hostile.py),
allowed by name."""

from __future__ import annotations

import pytest

from tests.security.hostile import HostileServer

from .servers import connect_backend, create_project, task_predictions, upload_files, wait_until

pytestmark = pytest.mark.labelstudio

FETCH_TIMEOUT = 40  # seconds: far longer than the five songs take, so the order of events shows who waited


def test_a_trickling_task_does_not_hold_up_the_queue(label_studio, start_backend, song_files):
    hostile = HostileServer(trickle_seconds=1.0)
    try:
        backend = start_backend("hostile-queue", ENGINE="dsp", QUEUE_WORKERS="1", MAX_ATTEMPTS="1",
                                FETCH_TIMEOUT=str(FETCH_TIMEOUT), ALLOWED_MEDIA_HOSTS="localhost")
        project_id = create_project(label_studio, "a trickling host")
        connect_backend(label_studio, project_id, backend)
        r = label_studio.api("POST", f"/api/projects/{project_id}/import?commit_to_project=true",
                             json=[{"audio": f"http://localhost:{hostile.port}/trickle"}])
        assert r.status_code in (200, 201), r.text
        wait_until(lambda: "/trickle" in hostile.paths(), 60, "the worker to start the trickling download")
        before = set(_task_ids(label_studio, project_id))
        normal = sorted(set(upload_files(label_studio, project_id, [song_files[s] for s in
                                                                    (".wav", ".flac", ".ogg", ".mp3", ".m4a")]))
                        - before)
        assert len(normal) == 5
        wait_until(lambda: all(task_predictions(label_studio, t) for t in normal), FETCH_TIMEOUT - 5,
                   "the five songs imported after the trickling one to be predicted while it still downloads")
        assert not hostile.left["/trickle"].is_set(), "the trickling download ended before the five were done"

        [slow] = list(before)
        health = wait_until(lambda: (h := backend.health()).get("failed_tasks") and h, FETCH_TIMEOUT + 60,
                            "the trickling task to fail at FETCH_TIMEOUT")
        failed = {f["task_id"]: f for f in health["failed_tasks"]}
        assert f"FETCH_TIMEOUT={FETCH_TIMEOUT} s" in failed[slow]["error"]
        assert hostile.left["/trickle"].wait(10)
        assert not task_predictions(label_studio, slow)
    finally:
        hostile.close()


def _task_ids(label_studio, project_id: int) -> list[int]:
    return [t.id for t in label_studio.client().tasks.list(project=project_id)]
