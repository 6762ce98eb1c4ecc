"""Pre-labeling on import: Label Studio calls ``POST /webhook`` for every event of a project with this backend
connected. On ``TASKS_CREATED`` (one call per import, payload ``{"action", "tasks": [{"id", "data", "project",
...}], "project": {"id", ...}}``) the new tasks go into the persistent queue and a worker thread of this process
(``worker.py``) predicts them and posts the predictions, so they are there before anyone opens a task.

The answer is quick (no prediction happens inside the request): Label Studio does not wait for webhooks.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

TASKS_CREATED = "TASKS_CREATED"

# One queue per process and settings (opening SQLite per request would be wasteful).
_QUEUES: dict = {}
_QUEUES_LOCK = threading.Lock()


def _queue(settings):
    from ml_backend.prelabel.jobqueue import open_queue

    with _QUEUES_LOCK:
        if settings not in _QUEUES:
            _QUEUES[settings] = open_queue(settings)
        return _QUEUES[settings]


def _id(value) -> int | None:
    """An integer id from ``5``, ``"5"`` or ``{"id": 5}``; None otherwise."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def created_jobs(payload: dict) -> list[tuple[int, int]]:
    """(project_id, task_id) pairs of a TASKS_CREATED payload; a task's own ``project`` wins over the payload's."""
    project_id = _id(payload.get("project"))
    jobs = []
    for task in payload.get("tasks") or []:
        if not isinstance(task, dict):
            continue
        task_id, task_project = _id(task.get("id")), _id(task.get("project"))
        pid = task_project if task_project is not None else project_id
        if task_id is not None and pid is not None:
            jobs.append((pid, task_id))
    return jobs


def handle_webhook(payload: dict, settings) -> dict:
    """Queue the tasks of a TASKS_CREATED event; every other action is acknowledged and ignored. Returns the JSON
    answer for Label Studio (and for people reading the backend's responses)."""
    action = str(payload.get("action") or "")
    if action != TASKS_CREATED:
        return {"status": "ignored", "action": action}
    jobs = created_jobs(payload)
    if not jobs:
        return {"status": "ignored", "action": action,
                "reason": "the payload names no task ids with a project (expected tasks[].id and project.id)"}
    if not (settings.label_studio_url and settings.label_studio_api_key):
        log.warning("TASKS_CREATED for %d task(s) not queued: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY so "
                    "that the worker can post predictions", len(jobs))
        return {"status": "not queued", "action": action, "tasks": len(jobs),
                "reason": "the backend has no LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY to post predictions with"}
    from ml_backend.prelabel.worker import start_background_workers

    queue = _queue(settings)
    added = queue.enqueue(jobs)
    start_background_workers(settings)  # normally already running (started with the app); cheap when it is
    log.info("TASKS_CREATED: queued %d of %d task(s) of project %s", added, len(jobs), jobs[0][0])
    return {"status": "queued", "action": action, "queued": added, "queue_length": queue.pending_count()}
