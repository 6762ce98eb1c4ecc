"""``ls-acestep preannotate``: pre-annotate a whole Label Studio project in this process, with the same pipeline as
the backend (``SongModel``) but without Label Studio's 100 s prediction timeout.

Each prediction is posted as soon as it is made, and tasks that already hold a real prediction of the current
model_version are skipped (``--only-missing``, the default), so an interrupted run simply continues where it
stopped when run again.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import click


@dataclass
class RunSummary:
    """Counts of one run; ``failed`` holds (task id, reason)."""

    tasks: int = 0
    posted: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    left: int = 0  # not started (interrupted or --limit)
    seconds: float = 0.0

    def line(self, project_id: int, version: str) -> str:
        text = (f"project {project_id}: {self.tasks} task(s): {self.posted} predicted, {self.skipped} skipped "
                f"(already had a {version} prediction), {len(self.failed)} failed")
        if self.left:
            text += f", {self.left} not started"
        return text + f" in {self.seconds:.1f} s"


def select_tasks(tasks: list[dict], version: str, only_missing: bool, limit: int | None) -> tuple[list, int]:
    """The tasks to predict (in project order) and how many were skipped for holding a real ``version``
    prediction (a failed task's ``<version>-failed`` marker does not count: ``worker.has_version``)."""
    from ml_backend.prelabel.worker import has_version

    todo, skipped = [], 0
    for task in tasks:
        if only_missing and has_version(task.get("predictions"), version):
            skipped += 1
        else:
            todo.append(task)
    return (todo[:limit] if limit is not None else todo), skipped


def project_tasks(client, project_id: int) -> list[dict]:
    """Every task of the project with its data and the ids and model versions of its predictions."""
    out = []
    for task in client.tasks.list(project=project_id, fields="all"):
        versions = [{"id": getattr(p, "id", None), "model_version": getattr(p, "model_version", None),
                     "result": bool(getattr(p, "result", None))}  # has_version only asks whether it is empty
                    for p in (task.predictions or [])]
        out.append({"id": task.id, "data": task.data or {}, "project": project_id, "predictions": versions})
    return out


def run_settings(settings, requested_engine: str, ls_url: str, ls_token: str, environ=os.environ):
    """(settings, why): the backend's settings for this run. The engine is chosen as ``ls-acestep up`` chooses it
    (``requested_engine`` unless "auto"; then ENGINE when set, else transformers with a GPU and dsp without), so a
    machine without a GPU does not try to download a 7B model; ``why`` says how it was chosen. The prediction cache
    is MODEL_DIR when set, else the model_dir of ``up``'s per-user data folder (never ./model_dir of whatever
    folder the command runs in). Media downloads and posts go to this run's Label Studio, whatever the environment
    says."""
    from ml_backend.studio.up import choose_engine, default_data_dir

    engine, why = choose_engine(requested_engine)
    model_dir = settings.model_dir if environ.get("MODEL_DIR", "").strip() else default_data_dir() / "model_dir"
    return dataclasses.replace(settings, engine=engine, model_dir=model_dir, label_studio_url=ls_url,
                               label_studio_api_key=ls_token), why


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _connect(ls_url: str, ls_token: str, project_id: int):
    """The SDK client and the project's label config; a clear error for a wrong URL, token or project id."""
    from ls_acestep.media import MediaError, make_client

    from ml_backend.prelabel.worker import sdk_error_detail

    try:
        client = make_client(ls_url, ls_token)
    except MediaError as exc:
        raise _fail(str(exc)) from None
    try:
        project = client.projects.get(id=project_id)
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if status == 404:
            raise _fail(f"project {project_id} does not exist at {ls_url} (the id is in the project's URL: "
                        f"{ls_url}/projects/<id>)") from None
        if status in (401, 403):
            raise _fail(f"Label Studio at {ls_url} refused the token ({sdk_error_detail(exc)}); copy it from "
                        "Account & Settings > Access Token") from None
        raise _fail(f"cannot reach Label Studio at {ls_url}: {sdk_error_detail(exc)}") from None
    return client, project.label_config or ""


def run(model, client, tasks: list[dict], label_config: str, concurrency: int, report,
        replace: bool = False) -> RunSummary:
    """Predict and post ``tasks`` with ``concurrency`` tasks in flight; ``report(outcome)`` after each one. Each
    task's audio is downloaded in its own thread; the tasks waiting for the model then share one model call
    (``worker.SongBatcher``: their windows are batched together). On Ctrl-C, tasks not started are dropped and
    the ones in flight are finished (raises _Interrupted with the summary); a second Ctrl-C abandons them
    (KeyboardInterrupt)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from ml_backend.prelabel.worker import JobFailed, SongBatcher, TaskOutcome

    summary = RunSummary(tasks=len(tasks))
    started = time.perf_counter()
    batcher = SongBatcher()

    def one(task: dict) -> TaskOutcome:
        try:
            fetch = getattr(model, "fetch_audio", None)
            if fetch is not None:
                fetch(task, label_config)  # downloads side by side, outside the model call
            return batcher.predict_and_post(model, client, task, label_config, replace=replace)
        except JobFailed as exc:
            return TaskOutcome(int(task["id"]), "failed", str(exc))
        except Exception as exc:  # one task's surprise must not end the run
            return TaskOutcome(int(task["id"]), "failed", f"{type(exc).__name__}: {exc}")

    def count(outcome: TaskOutcome) -> None:
        if outcome.status == "posted":
            summary.posted += 1
        elif outcome.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed.append((outcome.task_id, outcome.detail))
        report(outcome)

    # Ctrl-C only sets a flag: no new task starts, the ones in flight finish and are counted (an exception raised
    # between submitting a task and recording it would lose track of it). A second Ctrl-C abandons them.
    stop = threading.Event()
    running: set = set()

    def on_sigint(_signum, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"\ninterrupted: finishing {len(running)} task(s) in flight (Ctrl-C again to abandon them)",
                   err=True)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="preannotate")
    queue = list(tasks)
    try:
        while running or (queue and not stop.is_set()):
            while queue and not stop.is_set() and len(running) < max(1, concurrency):
                running.add(pool.submit(one, queue.pop(0)))
            done, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                count(future.result())
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    summary.seconds = time.perf_counter() - started
    if stop.is_set():
        summary.left = len(queue)
        pool.shutdown(wait=False, cancel_futures=True)
        raise _Interrupted(summary)
    pool.shutdown()
    summary.seconds = time.perf_counter() - started
    return summary


class _Interrupted(Exception):
    def __init__(self, summary: RunSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


@click.command("preannotate")
@click.option("--ls-url", envvar="LABEL_STUDIO_URL", required=True, help="Label Studio URL (env LABEL_STUDIO_URL).")
@click.option("--ls-token", envvar="LABEL_STUDIO_API_KEY", required=True,
              help="Legacy token or personal access token (env LABEL_STUDIO_API_KEY).")
@click.option("--project", "project_id", type=int, required=True, help="Project id (in the project's URL).")
@click.option("--only-missing/--all", default=True, show_default=True,
              help="Skip tasks that already hold a prediction of the current model version; --all predicts every "
                   "task again and replaces its prediction of this version.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Tasks in flight: their downloads run side by side, and the songs waiting for the model "
                   "share one model call (their windows are batched together, up to 4 songs).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Predict at most this many tasks (a sample).")
@click.option("--engine", type=click.Choice(["auto", "transformers", "openai", "dsp"]), default="auto",
              show_default=True, help="auto: $ENGINE when set, else transformers with a GPU and dsp without (as "
                                      "`ls-acestep up` chooses).")
def preannotate_command(ls_url: str, ls_token: str, project_id: int, only_missing: bool, concurrency: int,
                        limit: int | None, engine: str) -> None:
    """Pre-annotate every task of a Label Studio project with the backend's pipeline, in this process.

    The engine's options come from the same environment variables as the backend (MODEL_ID, ...; see
    docs/backend.md). Predictions are cached in MODEL_DIR, by default in the folder `ls-acestep up` uses, and
    posted one by one; after Ctrl-C, run the same command again to continue.
    Exit status: 0 all done, 1 some tasks failed, 130 interrupted.
    """
    import logging

    from ml_backend.model import get_model
    from ml_backend.settings import Settings, SettingsError

    # a task's failure is printed as its "failed" line (the model returns the reason); the log shows only errors
    # beside the progress bar
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    ls_url = ls_url.rstrip("/")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise _fail(f"{exc} (see the settings table in docs/backend.md)") from None
    settings, why = run_settings(settings, engine, ls_url, ls_token)
    client, label_config = _connect(ls_url, ls_token, project_id)
    model = get_model(settings)
    version = model.model_version()
    tasks = project_tasks(client, project_id)
    todo, skipped = select_tasks(tasks, version, only_missing, limit)
    click.echo(f"project {project_id}: {len(tasks)} task(s), {skipped} already have a {version} prediction, "
               f"{len(todo)} to predict (ENGINE={settings.engine}: {why}; {concurrency} in flight; cache in "
               f"{settings.model_dir})", err=True)
    if not todo:
        click.echo(RunSummary(tasks=len(tasks), skipped=skipped).line(project_id, version))
        return
    click.echo(f"loading the {settings.engine} engine ...", err=True)
    try:
        model.load()
    except Exception as exc:
        raise _fail(f"the model could not be loaded: {exc}") from None

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="song", desc="pre-annotating", file=sys.stderr)

    def report(outcome) -> None:
        line = f"task {outcome.task_id}: {outcome.status}" + (f" ({outcome.detail})" if outcome.detail else "")
        if bar is not None:
            bar.update(1)
            if outcome.status == "failed":
                bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    try:
        summary = run(model, client, todo, label_config, concurrency, report, replace=not only_missing)
        code = 1 if summary.failed else 0
    except _Interrupted as stop:
        summary, code = stop.summary, 130
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("abandoned; run the same command again to continue", err=True)
        os._exit(130)  # worker threads in the middle of a song cannot be joined quickly
    if bar is not None:
        bar.close()
    summary.tasks, summary.skipped = len(tasks), summary.skipped + skipped
    summary.left += max(0, len(tasks) - skipped - len(todo)) if limit is not None else 0
    click.echo(summary.line(project_id, version))
    for task_id, reason in summary.failed:
        click.echo(f"  failed: task {task_id}: {reason}")
    if code == 130:
        click.echo("interrupted; run the same command again to continue (done tasks are skipped)", err=True)
    elif summary.left:
        click.echo(f"{summary.left} task(s) left; run again without --limit to do them", err=True)
    sys.exit(code)
