"""``ls-acestep import SOURCE --ls-url URL --ls-token TOKEN --project N``: existing labels into Label Studio for
review. Each song of SOURCE (an ACE-Step dataset JSON, or a folder: see import_sources) becomes a task of project N
with one prediction built from its labels, so annotators correct them on the timeline instead of starting over.

- Audio is uploaded to Label Studio, or, when it lies under Label Studio's LOCAL_FILES_DOCUMENT_ROOT (pass
  ``--document-root``), referenced as ``/data/local-files/?d=<path>``; the output says which for every song.
- The prediction's ``model_version`` names the source (``import-acestep-dataset``, ``import-sidecars``,
  ``import-ls-acestep``, ``import-text-files``).
- A task carries the audio's content hash in ``data.ls_acestep_import``: a re-run finds it, adds no second task and
  no second prediction of the same source.
- One song at a time; a song that cannot be read or sent is reported and the run goes on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import click

KEY = "ls_acestep_import"  # task data key holding the audio's content hash
EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2


@dataclass
class Options:
    source: Path
    ls_url: str
    ls_token: str
    project: int
    document_root: Path | None = None  # LOCAL_FILES_DOCUMENT_ROOT as this machine sees it
    timeout: float = 120.0  # seconds per request: an upload of a long song over a slow link


@dataclass
class Summary:
    songs: int = 0
    created: int = 0  # new tasks
    predicted: int = 0  # a prediction added to a task that was already there
    unchanged: int = 0  # task and prediction were already there
    skipped: int = 0  # unreadable labels or audio
    failed: int = 0  # Label Studio refused
    uploaded: int = 0
    local_files: int = 0
    with_warnings: int = 0
    fatal: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return EXIT_UNUSABLE
        return EXIT_PROBLEMS if (self.skipped or self.failed) else EXIT_OK


class StudioError(Exception):
    """Label Studio refused a request; the message names the step and its answer."""


class Studio:
    """The few Label Studio calls an import needs (label-studio-sdk 2.x, plus one multipart upload)."""

    def __init__(self, client, url: str, project: int, timeout: float):
        self.client, self.url, self.project, self.timeout = client, url.rstrip("/"), project, timeout

    def _call(self, what: str, step):
        from label_studio_sdk.core.api_error import ApiError

        try:
            return step()
        except ApiError as exc:
            raise StudioError(f"{what}: Label Studio answered HTTP {exc.status_code}: {_detail(exc.body)}") from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] not in ("httpx", "httpcore"):
                raise
            raise StudioError(f"{what}: cannot reach Label Studio ({type(exc).__name__}: {exc})") from None

    def label_config(self) -> str:
        project = self._call(f"reading project {self.project}", lambda: self.client.projects.get(id=self.project))
        return project.label_config or ""

    def imported(self) -> dict[str, tuple[int, dict]]:
        """Content hash -> (task id, task data) of the project's tasks that an earlier import made."""
        found: dict[str, tuple[int, dict]] = {}

        def collect():
            for task in self.client.tasks.list(project=self.project, fields="all"):
                data = task.data if isinstance(task.data, dict) else {}
                if isinstance(data.get(KEY), str):
                    found.setdefault(data[KEY], (task.id, data))

        self._call("listing the project's tasks", collect)
        return found

    def versions(self, task_id: int) -> set[str]:
        predictions = self._call(f"listing task {task_id}'s predictions",
                                 lambda: list(self.client.predictions.list(task=task_id)))
        return {p.model_version for p in predictions if p.model_version}

    def predict(self, task_id: int, prediction: dict) -> None:
        self._call(f"adding the prediction to task {task_id}", lambda: self.client.predictions.create(
            task=task_id, result=prediction["result"], score=prediction["score"],
            model_version=prediction["model_version"]))

    def upload(self, audio: Path, key: str, prediction: dict) -> int:
        """Upload the audio as a new task, give it its prediction, then its content hash (in this order: a task
        opened without a prediction would ask a connected ML backend for one)."""
        import httpx

        from ls_acestep.media import auth_header

        with open(audio, "rb") as handle:
            try:
                response = httpx.post(f"{self.url}/api/projects/{self.project}/import",
                                      params={"commit_to_project": "true", "return_task_ids": "true"},
                                      headers={"Authorization": auth_header(self.client)},
                                      files={"file": (audio.name, handle)}, timeout=self.timeout)
            except httpx.HTTPError as exc:
                raise StudioError(f"uploading {audio.name}: {type(exc).__name__}: {exc}") from None
        if response.status_code not in (200, 201):
            raise StudioError(f"uploading {audio.name}: Label Studio answered HTTP {response.status_code}: "
                              f"{response.text[:300]}")
        ids = response.json().get("task_ids") or []
        if len(ids) != 1:
            raise StudioError(f"uploading {audio.name}: Label Studio made {len(ids)} tasks of it")
        task_id = ids[0]
        self.predict(task_id, prediction)
        task = self._call(f"reading task {task_id}", lambda: self.client.tasks.get(id=str(task_id)))
        data = dict(task.data or {})
        data[KEY] = key
        self._call(f"marking task {task_id} as imported", lambda: self.client.tasks.update(id=str(task_id),
                                                                                           data=data))
        return task_id

    def reference(self, data: dict, prediction: dict) -> int:
        """A new task whose audio is referenced (local files), created with its prediction in one request."""
        answer = self._call("importing the task", lambda: self.client.projects.import_tasks(
            id=self.project, request=[{"data": data, "predictions": [prediction]}], return_task_ids=True))
        ids = getattr(answer, "task_ids", None) or []
        if len(ids) != 1:
            raise StudioError(f"importing the task: Label Studio made {len(ids)} tasks of it")
        return ids[0]


def _detail(body) -> str:
    if isinstance(body, dict):
        return "; ".join(f"{k}: {v}" for k, v in body.items())[:300]
    return str(body)[:300]


def local_files_ref(audio: Path, document_root: Path | None) -> str:
    """``/data/local-files/?d=<path under the document root>`` when ``audio`` lies under it, else ""."""
    if document_root is None:
        return ""
    try:
        relative = Path(audio).resolve().relative_to(Path(document_root).resolve())
    except ValueError:
        return ""
    return "/data/local-files/?d=" + quote(relative.as_posix(), safe="/")


def run_import(options: Options, say, progress=None, studio: Studio | None = None) -> Summary:
    """Import ``options.source`` into the project; ``say`` prints one line, ``progress(n)`` advances a bar."""
    from ls_acestep.media import MediaError, make_client
    from ml_backend.prediction.predictions import ConfigError, make_prediction, parse_config

    from .import_sources import SourceError, content_key, read_source

    summary = Summary()
    try:
        total, items, notes = read_source(options.source)
    except SourceError as exc:
        summary.fatal = str(exc)
        return summary
    for note in notes:
        say(f"note: {note}")
    try:
        studio = studio or Studio(make_client(options.ls_url, options.ls_token, options.timeout), options.ls_url,
                                  options.project, options.timeout)
        targets = parse_config(studio.label_config())
        known = studio.imported()
    except (MediaError, StudioError, ConfigError) as exc:
        summary.fatal = str(exc)
        return summary
    if progress is not None:
        progress(0, total)
    for item in items:
        summary.songs += 1
        try:
            _one(item, options, studio, targets, known, summary, say, make_prediction, content_key)
        except StudioError as exc:
            summary.failed += 1
            _problem(summary, say, f"{item.label}: {exc}")
        except OSError as exc:
            summary.skipped += 1
            _problem(summary, say, f"{item.label}: cannot read {exc.filename or item.audio}: {exc.strerror}")
        except Exception as exc:  # one odd song must not end the run: report it and go on
            summary.failed += 1
            _problem(summary, say, f"{item.label}: unexpected {type(exc).__name__}: {exc}; please report this "
                     "with the song's files")
        if progress is not None:
            progress(1, total)
    return summary


def _problem(summary: Summary, say, text: str) -> None:
    summary.problems.append(text)
    say(f"problem: {text}")


def _one(item, options, studio, targets, known, summary, say, make_prediction, content_key) -> None:
    if item.error:
        summary.skipped += 1
        _problem(summary, say, f"{item.label}: {item.error}")
        return
    for warning in item.warnings:
        say(f"{item.label}: {warning}")
    summary.with_warnings += bool(item.warnings)
    prediction = make_prediction(item.song, targets, 1.0, item.model_version)
    key = content_key(item.audio)
    if key in known:
        task_id = known[key][0]
        if item.model_version in studio.versions(task_id):
            summary.unchanged += 1
            say(f"{item.label}: already task {task_id} with an {item.model_version} prediction; unchanged")
            return
        studio.predict(task_id, prediction)
        summary.predicted += 1
        say(f"{item.label}: task {task_id} was there; {item.model_version} prediction added")
        return
    ref = local_files_ref(item.audio, options.document_root)
    if ref:
        task_id = studio.reference({targets.audio_key: ref, KEY: key}, prediction)
        summary.local_files += 1
        how = f"referenced as local files ({ref})"
    else:
        task_id = studio.upload(item.audio, key, prediction)
        summary.uploaded += 1
        how = "uploaded"
    known[key] = (task_id, {})
    summary.created += 1
    regions = sum(1 for r in prediction["result"] if r.get("type") == "labels")
    say(f"{item.label}: task {task_id}, audio {how}; {item.model_version} prediction with "
        f"{len(prediction['result'])} results ({regions} regions)")


@click.command("import")
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--ls-url", envvar="LABEL_STUDIO_URL", required=True, show_envvar=True, help="Label Studio URL.")
@click.option("--ls-token", envvar="LABEL_STUDIO_API_KEY", required=True, show_envvar=True,
              help="Legacy token or personal access token.")
@click.option("--project", type=int, required=True, help="The project id (its label config names the controls).")
@click.option("--document-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              envvar="LOCAL_FILES_DOCUMENT_ROOT", show_envvar=True,
              help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT as seen here: audio under it is referenced as local "
                   "files instead of uploaded (Label Studio needs LOCAL_FILES_SERVING_ENABLED=true and a Local "
                   "Files storage over the folder to play it).")
def import_command(source, ls_url, ls_token, project, document_root):
    """Put the songs of SOURCE into a Label Studio project, each with a prediction from its existing labels.

    SOURCE is an ACE-Step dataset JSON or a folder of audio with <stem>.json sidecars (ours or the original
    captioning pipeline's), <stem>.lyrics.txt / <stem>.txt / <stem>.caption.txt and CSV files. Exit status: 0 all
    imported (or already there), 1 some songs skipped or refused, 2 unusable source or project.
    """
    bar = None

    def say(line: str) -> None:
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    marks = {"done": 0, "next": 10}

    def progress(step: int, total: int) -> None:
        nonlocal bar
        if sys.stderr.isatty():
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="song", desc="importing", file=sys.stderr, leave=False)
            bar.update(step)
            return
        marks["done"] += step
        percent = 100 * marks["done"] // max(total, 1)
        if step and percent >= marks["next"]:
            click.echo(f"progress: {marks['done']} of {total} songs", err=True)
            marks["next"] = (percent // 10 + 1) * 10

    options = Options(source=source, ls_url=ls_url, ls_token=ls_token, project=project, document_root=document_root)
    summary = run_import(options, say, progress)
    if bar is not None:
        bar.close()
    if summary.fatal:
        click.echo(f"error: {summary.fatal}", err=True)
        sys.exit(summary.exit_code)
    click.echo(f"{summary.songs} song(s): {summary.created} new task(s) ({summary.uploaded} uploaded, "
               f"{summary.local_files} referenced as local files), {summary.predicted} prediction(s) added to "
               f"existing tasks, {summary.unchanged} unchanged, {summary.skipped} skipped, {summary.failed} refused; "
               f"{summary.with_warnings} with values changed or left out (listed above)")
    sys.exit(summary.exit_code)
