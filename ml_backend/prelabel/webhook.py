"""Pre-labeling on import: Label Studio calls ``POST /webhook`` for every event of a project with this backend
connected. On ``TASKS_CREATED`` (one call per import, payload ``{"action", "tasks": [{"id", "data", "project",
...}], "project": {"id", ...}}``) the new tasks go into the persistent queue and a worker thread of this process
(``worker.py``) predicts them and posts the predictions, so they are there before anyone opens a task.

The answer is quick (no prediction happens inside the request): Label Studio does not wait for webhooks. A
payload with an id that is not a whole positive number (``5.9``, ``Infinity``, ``1e30``) is refused (400); when
the queue cannot take the jobs (Redis down) the answer is 503 so that the delivery can be retried: nothing is
acknowledged that was not stored.
"""

from __future__ import annotations

import logging
import math
import threading

log = logging.getLogger(__name__)

TASKS_CREATED = "TASKS_CREATED"
MAX_ID = 2**63 - 1  # Label Studio's ids are 64-bit integers (and SQLite's INTEGER is too)


class PayloadError(ValueError):
    """The webhook payload holds a value the queue cannot take; the message names it (HTTP 400)."""

# One queue per process and settings (opening SQLite per request would be wasteful).
_QUEUES: dict = {}
_QUEUES_LOCK = threading.Lock()


def _queue(settings):
    from ml_backend.prelabel.jobqueue import open_queue

    with _QUEUES_LOCK:
        if settings not in _QUEUES:
            _QUEUES[settings] = open_queue(settings)
        return _QUEUES[settings]


def _id(value, what: str) -> int | None:
    """A positive 64-bit id from ``5``, ``5.0``, ``"5"`` or ``{"id": 5}``; None when absent. Raises PayloadError
    for anything else (``5.9`` is not truncated to 5; ``Infinity`` and ``1e30`` are not ids)."""
    if isinstance(value, dict):
        value = value.get("id")
    if value is None:
        return None
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 1 <= number <= MAX_ID:
        raise PayloadError(f"{what} id {value!r} is not a whole number from 1 to {MAX_ID}; send Label Studio's "
                           "task and project ids")
    return number


def created_jobs(payload: dict) -> list[tuple[int, int]]:
    """(project_id, task_id) pairs of a TASKS_CREATED payload; a task's own ``project`` wins over the payload's."""
    project_id = _id(payload.get("project"), "project")
    jobs = []
    tasks = payload.get("tasks") or []
    if not isinstance(tasks, list):
        raise PayloadError(f'"tasks" is JSON {type(tasks).__name__}, expected a list of tasks')
    for task in tasks:
        if not isinstance(task, dict):
            continue
        task_id, task_project = _id(task.get("id"), "task"), _id(task.get("project"), "project")
        pid = task_project if task_project is not None else project_id
        if task_id is not None and pid is not None:
            jobs.append((pid, task_id))
    return jobs


def handle_webhook(payload: dict, settings) -> dict:
    """Queue the tasks of a TASKS_CREATED event; every other action is acknowledged and ignored. Returns the JSON
    answer for Label Studio (and for people reading the backend's responses). Raises PayloadError for a bad id
    and ``jobqueue.QueueError`` when the queue cannot store the jobs (nothing was queued then)."""
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
    added = queue.enqueue(jobs)  # QueueError: nothing stored, the caller answers 503
    log.info("TASKS_CREATED: queued %d of %d task(s) of project %s", added, len(jobs), jobs[0][0])
    # The jobs are stored now: whatever fails below must not turn the answer into an error (a retried delivery
    # would be harmless, but the answer would be wrong).
    try:
        start_background_workers(settings)  # normally already running (started with the app); cheap when it is
        length = queue.pending_count()
    except Exception as exc:
        log.warning("TASKS_CREATED: queued, but the queue's length cannot be read: %s", exc)
        length = None
    return {"status": "queued", "action": action, "queued": added, "queue_length": length}
