"""The pre-labeling worker: takes (project, task) jobs from the queue (``jobqueue``), predicts the task's song with
the process's ``SongModel`` and posts the prediction to Label Studio through label-studio-sdk.

It runs as background threads inside each backend process (``QUEUE_WORKERS`` per process, default 1), so it
shares the model the process already loaded for ``/predict`` instead of loading a second copy on the GPU. With
``QUEUE_URL=redis://...`` the backends of several machines work one queue; set ``QUEUE_WORKERS=0`` on a machine
that should only take webhooks.

``predict_and_post`` is also what ``ls-acestep preannotate`` runs for each task.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from ml_backend.prediction.predictions import failed_version, is_current_prediction

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0  # how often an idle worker looks for due jobs
# Jobs one worker holds at once: their audio downloads run side by side (a trickling host holds one slot for at
# most FETCH_TIMEOUT), their predictions one after the other.
JOB_SLOTS = 4
LABEL_CONFIG_TTL = 60.0  # seconds a project's label config is reused before it is read again


class JobFailed(Exception):
    """This try of a job failed; the message says why (it lands in the failed list after MAX_ATTEMPTS)."""


class TaskGone(Exception):
    """The task or project no longer exists in Label Studio: nothing to do."""


@dataclass
class TaskOutcome:
    """What happened to one task: "posted", "skipped" (a prediction of this model_version exists) or "failed"."""

    task_id: int
    status: str
    detail: str = ""


def _field(p, name: str):
    """A prediction's field, from an SDK object or a dict."""
    return p.get(name) if isinstance(p, dict) else getattr(p, name, None)


def has_version(predictions, model_version: str) -> bool:
    """True when one of the task's predictions (SDK objects or dicts) is a real prediction of ``model_version``:
    a failed task's empty prediction (``<version>-failed``, or an empty one of the version itself) is not."""
    return any(is_current_prediction(p, model_version) for p in predictions or [])


def superseded(predictions, model_version: str) -> list:
    """The task's predictions that a new prediction of ``model_version`` replaces: those of the version and the
    failed markers (``<version>-failed``) of earlier tries."""
    versions = (model_version, failed_version(model_version))
    return [p for p in predictions or [] if _field(p, "model_version") in versions]


def sdk_error_detail(exc: Exception) -> str:
    """A short reason from a label-studio-sdk or httpx error."""
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if status is not None:
        detail = body.get("detail") if isinstance(body, dict) else body
        return f"Label Studio answered HTTP {status}: {detail}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def predict_and_post(model, client, task: dict, label_config: str, replace: bool = False) -> TaskOutcome:
    """Predict one task (``{"id", "data", "predictions"}``) and post the prediction, unless the task already holds
    a real one of the model's current version (``has_version``); with ``replace``, predict anyway. After posting,
    the task's older predictions of the version and its failed markers are deleted (a task never keeps two). Raises JobFailed when no prediction could be made or posted."""
    version = model.model_version()
    task_id = int(task["id"])
    old = superseded(task.get("predictions"), version)
    if has_version(old, version) and not replace:
        return TaskOutcome(task_id, "skipped", f"already has a {version} prediction")
    outcome = model.predict_tasks([task], label_config)[0]
    prediction = outcome.prediction
    if not prediction.get("result"):
        raise JobFailed(outcome.failure or "the model returned an empty prediction; see the backend log")
    try:
        client.predictions.create(task=task_id, result=prediction["result"], score=prediction.get("score"),
                                  model_version=prediction.get("model_version") or version)
    except Exception as exc:  # the SDK raises ApiError or httpx errors
        raise JobFailed(f"posting the prediction failed: {sdk_error_detail(exc)}") from None
    for p in old:
        if _field(p, "id") is not None:
            try:
                client.predictions.delete(id=_field(p, "id"))
            except Exception as exc:
                log.warning("task %s: the replaced prediction %s stays: %s", task_id, _field(p, "id"),
                            sdk_error_detail(exc))
    return TaskOutcome(task_id, "posted", f"{len(prediction['result'])} result items")


def fetch_task(client, project_id: int, task_id: int) -> dict:
    """The task as a dict with its data and predictions: a fresh read, so a re-delivered job sees predictions
    posted meanwhile. Read through the task list: ``GET /api/tasks/<id>`` would make Label Studio call /predict
    itself for a task without predictions. Raises TaskGone for a deleted task, JobFailed when Label Studio
    cannot be reached."""
    query = json.dumps({"selectedItems": {"all": False, "included": [int(task_id)]}})
    try:
        found = [t for t in client.tasks.list(project=project_id, fields="all", query=query) if t.id == task_id]
    except Exception as exc:
        if getattr(exc, "status_code", None) == 404:
            raise TaskGone(f"project {project_id} no longer exists in Label Studio") from None
        raise JobFailed(f"cannot read task {task_id}: {sdk_error_detail(exc)}") from None
    if not found:
        raise TaskGone(f"task {task_id} no longer exists in project {project_id}")
    task = found[0]
    return {"id": task.id, "data": task.data or {}, "project": project_id, "predictions": task.predictions or []}


@dataclass
class Worker:
    """One worker loop over the queue. ``run_once`` handles at most one job (tests call it directly)."""

    settings: object
    queue: object
    model: object = None
    client: object = None
    label_configs: dict = field(default_factory=dict)  # project id -> (monotonic seconds when read, config XML)
    current: object = None  # the job being worked on, released on shutdown
    stop: threading.Event = field(default_factory=threading.Event)
    held: dict = field(default_factory=dict)  # id(job) -> job claimed by run()'s slots, released on shutdown
    predict_lock: threading.Lock = field(default_factory=threading.Lock)  # one prediction at a time per worker

    def _client(self):
        if self.client is None:
            from ls_acestep.media import MediaError, make_client

            try:
                self.client = make_client(self.settings.label_studio_url, self.settings.label_studio_api_key,
                                          timeout=self.settings.fetch_timeout)
            except MediaError as exc:
                raise JobFailed(str(exc)) from None
        return self.client

    def _model(self):
        if self.model is None:
            from ml_backend.model import get_model

            self.model = get_model(self.settings)
        return self.model

    def _label_config(self, project_id: int) -> str:
        """The project's label config, read again after LABEL_CONFIG_TTL seconds (someone may edit it)."""
        read_at, _ = self.label_configs.get(project_id, (None, ""))
        if read_at is None or time.monotonic() - read_at > LABEL_CONFIG_TTL:
            try:
                project = self._client().projects.get(id=project_id)
            except Exception as exc:
                if getattr(exc, "status_code", None) == 404:
                    raise TaskGone(f"project {project_id} no longer exists in Label Studio") from None
                raise JobFailed(f"cannot read project {project_id}: {sdk_error_detail(exc)}") from None
            self.label_configs[project_id] = (time.monotonic(), project.label_config or "")
        return self.label_configs[project_id][1]

    def process(self, job) -> TaskOutcome:
        """Predict and post one job's task; raises JobFailed or TaskGone."""
        client = self._client()
        task = fetch_task(client, job.project_id, job.task_id)
        label_config = self._label_config(job.project_id)
        self._model().fetch_audio(task, label_config)  # downloads side by side, outside the prediction lock
        with self.predict_lock:
            return predict_and_post(self._model(), client, task, label_config)

    def run_once(self) -> TaskOutcome | None:
        """Claim one due job and handle it; None when the queue has nothing due."""
        job = self.queue.claim()
        if job is None:
            return None
        self.current = job
        try:
            return self.handle(job)
        finally:
            self.current = None

    def handle(self, job) -> TaskOutcome:
        """Process one claimed job and record its outcome in the queue."""
        try:
            outcome = self.process(job)
        except TaskGone as exc:
            log.info("pre-label job for task %s dropped: %s", job.task_id, exc)
            self.queue.complete(job)
            return TaskOutcome(job.task_id, "gone", str(exc))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, JobFailed) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, JobFailed):
                log.exception("pre-label job for task %s: unexpected error", job.task_id)
            if self.queue.fail(job, reason):
                log.warning("task %s (project %s): try %d of %d failed, will retry: %s", job.task_id,
                            job.project_id, job.attempts, self.queue.max_attempts, reason)
            else:
                log.error("task %s (project %s): giving up after %d tries: %s (listed under failed_tasks in "
                          "/health)", job.task_id, job.project_id, job.attempts, reason)
            return TaskOutcome(job.task_id, "failed", reason)
        self.queue.complete(job)
        log.info("task %s (project %s): prediction %s (%s)", job.task_id, job.project_id, outcome.status,
                 outcome.detail)
        return outcome

    def run(self) -> None:
        """Loop until ``stop`` is set, holding up to JOB_SLOTS jobs at once (each in its own thread: a download
        that waits on a slow host does not hold up the next jobs); never dies on an error (a broken queue or
        Label Studio is retried)."""
        slots = threading.BoundedSemaphore(JOB_SLOTS)
        while not self.stop.is_set():
            if not slots.acquire(timeout=IDLE_POLL_SECONDS):
                continue
            try:
                job = self.queue.claim()
            except Exception:
                log.exception("pre-labeling worker: the queue failed; trying again in %.0f s", IDLE_POLL_SECONDS)
                job = None
            if job is None:
                slots.release()
                self.stop.wait(IDLE_POLL_SECONDS)
                continue
            self.held[id(job)] = job
            threading.Thread(target=self._run_slot, args=(job, slots), name="prelabel-job", daemon=True).start()

    def _run_slot(self, job, slots) -> None:
        try:
            self.handle(job)
        except Exception:  # the queue failed while recording the outcome; the lease brings the job back
            log.exception("pre-label job for task %s: its outcome could not be recorded", job.task_id)
        finally:
            self.held.pop(id(job), None)
            slots.release()

    def shutdown(self) -> None:
        """Stop the loop and give an unfinished job back to the queue (without counting the try)."""
        self.stop.set()
        for job in [self.current, *list(self.held.values())]:
            if job is None:
                continue
            try:
                self.queue.release(job)
            except Exception:  # the process is exiting; the lease will expire instead
                pass


# The workers of this process, keyed by pid: gunicorn forks workers, and each process needs its own threads.
_WORKERS: dict[int, list[Worker]] = {}
_WORKERS_LOCK = threading.Lock()


def start_background_workers(settings) -> list[Worker]:
    """Start ``settings.queue_workers`` worker threads in this process, once (later calls return the same ones).
    Starts none when QUEUE_WORKERS=0 or when Label Studio's URL and token are not set (they are needed to post)."""
    with _WORKERS_LOCK:
        pid = os.getpid()
        if pid in _WORKERS:
            return _WORKERS[pid]
        workers: list[Worker] = []
        _WORKERS[pid] = workers
        if settings.queue_workers <= 0:
            log.info("pre-labeling: QUEUE_WORKERS=0, this process only enqueues")
            return workers
        if not (settings.label_studio_url and settings.label_studio_api_key):
            log.warning("pre-labeling worker not started: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY so that "
                        "predictions can be posted back to Label Studio")
            return workers
        from ml_backend.prelabel.jobqueue import describe, open_queue

        queue = open_queue(settings)
        for n in range(settings.queue_workers):
            worker = Worker(settings=settings, queue=queue)
            thread = threading.Thread(target=worker.run, name=f"prelabel-worker-{n}", daemon=True)
            thread.start()
            workers.append(worker)
        atexit.register(lambda: [w.shutdown() for w in workers])
        log.info("pre-labeling: %d worker thread(s) on the %s", len(workers), describe(queue))
        return workers
