"""The pre-labeling worker: takes (project, task) jobs from the queue (``jobqueue``), predicts the task's song with
the process's ``SongModel`` and posts the prediction to Label Studio through label-studio-sdk.

It runs as background threads inside each backend process (``QUEUE_WORKERS`` per process, default 1), so it
shares the model the process already loaded for ``/predict`` instead of loading a second copy on the GPU. With
``QUEUE_URL=redis://...`` the backends of several machines work one queue; set ``QUEUE_WORKERS=0`` on a machine
that should only take webhooks.

Jobs whose audio is fetched wait for the model together: the first to get it predicts the songs of all waiting
jobs of its project (up to SONGS_PER_CALL) in one ``SongModel.predict_tasks`` call (``SongBatcher``), so the engine
batches the windows of several songs; each job is still posted, completed or failed on its own.

``predict_and_post_many`` is also what ``ls-acestep preannotate`` runs for each group of tasks.
"""

from __future__ import annotations

import atexit
import collections
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
# Songs handed to the model in one call when that many wait for it: the part-filled last batch of each song is
# topped up by the next song's windows; few enough that one call's decoded audio stays small (16 kHz float32:
# 19 MB per 5 minutes) and a job's lease (15 min) outlasts the call.
SONGS_PER_CALL = 4
RECENT_CALLS = 100  # SongBatcher.calls kept


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
    outcome = predict_and_post_many(model, client, [task], label_config, replace)[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def predict_and_post_many(model, client, tasks: list[dict], label_config: str,
                          replace: bool = False) -> list[TaskOutcome | JobFailed]:
    """``predict_and_post`` for several tasks of one project: the songs to predict go to the model in ONE
    ``predict_tasks`` call (their windows share the engine's batches), then each is posted on its own. Returns
    one entry per task, in order: its TaskOutcome, or the JobFailed saying why it failed."""
    version = model.model_version()
    outcomes: list = [None] * len(tasks)
    todo = []
    for index, task in enumerate(tasks):
        if has_version(superseded(task.get("predictions"), version), version) and not replace:
            outcomes[index] = TaskOutcome(int(task["id"]), "skipped", f"already has a {version} prediction")
        else:
            todo.append(index)
    results = model.predict_tasks([tasks[i] for i in todo], label_config) if todo else []
    for index, result in zip(todo, results):
        try:
            outcomes[index] = _post(client, tasks[index], result, version)
        except JobFailed as exc:
            outcomes[index] = exc
    return outcomes


def _post(client, task: dict, outcome, version: str) -> TaskOutcome:
    """Post one task's prediction (a ``model.TaskResult``) and delete what it replaces; raises JobFailed."""
    task_id = int(task["id"])
    old = superseded(task.get("predictions"), version)
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
class _Waiting:
    """One task waiting for the model in a SongBatcher; ``result`` is set once its group was predicted."""

    task: dict
    label_config: str
    result: object = None
    done: bool = False


class SongBatcher:
    """Predicts the tasks that wait for the model at the same moment in one call.

    Each caller of ``predict_and_post`` adds its task to the waiting list and queues for the model; the first to
    get it takes its own task and the other waiting tasks of the same label config (up to ``songs_per_call``),
    predicts and posts them together, and leaves every task's outcome with its caller. Nothing waits on
    purpose: a task alone is predicted alone."""

    def __init__(self, songs_per_call: int = SONGS_PER_CALL):
        self.songs_per_call = max(1, songs_per_call)
        self._waiting: list[_Waiting] = []
        self._list_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one model call at a time
        # task ids of the latest model calls (what tests and logs look at); bounded: a backend runs for months
        self.calls: collections.deque[list[int]] = collections.deque(maxlen=RECENT_CALLS)

    def predict_and_post(self, model, client, task: dict, label_config: str, replace: bool = False) -> TaskOutcome:
        """Like the module's ``predict_and_post`` (raises JobFailed), sharing the model call with waiting tasks."""
        mine = _Waiting(task, label_config)
        with self._list_lock:
            self._waiting.append(mine)
        with self._model_lock:
            if not mine.done:
                with self._list_lock:
                    others = [w for w in self._waiting if w is not mine and w.label_config == label_config]
                    group = [mine, *others[:self.songs_per_call - 1]]
                    self._waiting = [w for w in self._waiting if all(w is not g for g in group)]
                self.calls.append([int(w.task["id"]) for w in group])
                if len(group) > 1:
                    log.info("predicting %d songs in one model call (tasks %s)", len(group), self.calls[-1])
                try:
                    outcomes = predict_and_post_many(model, client, [w.task for w in group], label_config, replace)
                except Exception as exc:  # e.g. a label config without an Audio object: the whole group
                    outcomes = [exc] * len(group)
                for waiting, outcome in zip(group, outcomes):
                    waiting.result, waiting.done = outcome, True
        if isinstance(mine.result, Exception):
            raise mine.result
        return mine.result


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
    batcher: SongBatcher = field(default_factory=SongBatcher)  # one model call at a time, shared by waiting jobs

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
        return self.batcher.predict_and_post(self._model(), client, task, label_config)

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
