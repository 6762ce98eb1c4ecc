"""The export-to-dataset run: for each task, choose a result list, find and measure its audio, build the song,
write audio + sidecar + lyrics, and at the end the manifest, index, ACE-Step dataset file and report.

One task is in memory at a time; rows for the final files are spooled to disk. A task that fails is reported with
its id and the run goes on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from label_config.sidecar import INSTRUMENTAL_LYRICS, lyrics_file_text, to_sidecar
from ls_acestep.media import MediaError, MediaSource, locate, make_client, resolve_audio

from . import writer
from .export_reader import ExportError, TaskError, audio_ref, choose, iter_tasks, task_id
from .results import export_duration, song_from_results
from .validate import SCANNED

AUDIO_MODES = ("copy", "link", "none")
EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2
_UUID_NAMESPACE = uuid.UUID("6f1d3f0e-8a53-4c7e-9d0b-2f6b1b0c7a11")  # sample ids: uuid5(namespace, "task-<id>")


@dataclass
class Options:
    export: Path
    out: Path
    source: MediaSource = field(default_factory=MediaSource)
    audio: str = "copy"  # copy | link | none
    use_predictions: bool = False
    force: bool = False
    dry_run: bool = False


@dataclass
class Summary:
    """Counts of one run; ``exit_code`` follows the CLI contract (0 all converted, 1 some not, 2 unusable)."""

    tasks: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    kept: int = 0  # tasks with a hand-edited file that was not overwritten
    from_predictions: int = 0
    with_warnings: int = 0
    fatal: str = ""

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return EXIT_UNUSABLE
        return EXIT_PROBLEMS if (self.skipped or self.failed or self.kept) else EXIT_OK

    def counts(self) -> dict:
        return {k: getattr(self, k) for k in
                ("tasks", "converted", "skipped", "failed", "kept", "from_predictions", "with_warnings")}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Run:
    """State of one conversion run; ``convert`` drives it."""

    def __init__(self, options: Options, say):
        self.o = options
        self.say = say  # one line of human output
        self.out = Path(options.out)
        self.dataset = self.out / writer.DATASET_DIR
        self.dataset_abs = self.dataset.resolve()  # absolute paths in the ACE-Step dataset file
        self.dataset_abs_str = str(self.dataset_abs)
        self.summary = Summary()
        self.state = writer.State(self.out)
        for warning in self.state.load():
            say(f"warning: {warning}")
        self.stems = writer.StemBook({t: e.stem for t, e in self.state.tasks.items()})
        self.client = None
        if options.source.cache_dir is None:  # downloads are kept in DIR so that a re-run reuses them
            cache = self.out / writer.STATE_DIR / "cache"
            self.o = replace(options, source=replace(options.source, cache_dir=cache))
        self.started = False
        # An empty (or missing) dataset folder needs no per-file look-ups: stems are distinct within a run.
        self.fresh = not self.state.tasks and not (self.dataset.is_dir() and any(os.scandir(self.dataset)))
        self.any_vocals = False  # for the dataset file's all_instrumental

    def start(self) -> None:
        """Create the output folders and spools; called at the first task, so an unusable export writes
        nothing."""
        self.started = True
        if self.o.dry_run:
            return
        self.dataset.mkdir(parents=True, exist_ok=True)
        work = self.out / writer.STATE_DIR
        for leftover in work.glob(".*.jsonl") if work.is_dir() else ():  # spools of an interrupted run
            leftover.unlink()
        self.manifest = writer.Spool(work, "manifest")
        self.samples = writer.Spool(work, "samples")
        self.problems = writer.Spool(work, "problems")
        self.warnings = writer.Spool(work, "warnings")

    # -- per task ------------------------------------------------------------------------------------------------

    def task(self, index: int, task: object) -> None:
        self.summary.tasks += 1
        tid = task_id(task) if isinstance(task, dict) else None
        label = f"task {tid}" if tid is not None else f"task #{index + 1} in the export"
        try:
            if not isinstance(task, dict):
                raise TaskError(f"a {type(task).__name__} where a task object belongs")
            if tid is None:
                raise TaskError("the task has no integer \"id\"")
            choice, reason = choose(task, self.o.use_predictions)
            if choice is None:
                return self._problem(tid, "skipped", reason)
            self._convert(tid, task, choice)
        except TaskError as exc:
            self._problem(tid, "failed", f"malformed task: {exc}", label)
        except (MediaError, writer.AudioReadError) as exc:
            self._problem(tid, "failed", str(exc), label)
        except OSError as exc:  # reading the source audio or writing into DIR
            self._problem(tid, "failed", f"file error: {exc}", label)
        except _DryDownload:
            raise
        except Exception as exc:  # one odd task must not end the run: report it and go on
            self._problem(tid, "failed", f"unexpected {type(exc).__name__}: {exc}; please report this with the "
                          "task's JSON", label)

    def _convert(self, tid: int, task: dict, choice) -> None:
        o = self.o
        ref = audio_ref(task)
        stem, ext = writer.stem_and_ext(ref)
        stem = self.stems.assign(tid, stem)
        previous = self.state.tasks.get(tid)
        audio_name = f"{stem}{ext}"
        audio_dest = self.dataset / audio_name if o.audio != "none" else None  # no Path per task with none

        src, move, action = None, False, o.audio
        if o.audio != "none":
            src, move, action = self._audio_source(tid, ref, audio_dest, previous)
            duration = writer.measure_duration(src)
        else:
            duration = export_duration(choice.result, task.get("data"))

        converted = song_from_results(choice.result, duration)
        if o.audio != "none" and ext not in SCANNED:
            converted.warnings.append(f"audio {ext or '(no extension)'}: ACE-Step's LoRA training tab scans only "
                                      f"{' '.join(SCANNED)}; convert the file")
        if previous and previous.stem != stem:
            converted.warnings.append(f"the audio file name changed: files are now {stem}.*; the previous run's "
                                      f"{previous.stem}.* are left in {writer.DATASET_DIR}/ (delete them)")
        song = converted.song
        lyrics = lyrics_file_text(song)
        sidecar = to_sidecar(song, provenance(tid, choice, ref), lyrics)

        side_plan = writer.plan_text(self.dataset / f"{stem}.json", writer.sidecar_bytes(sidecar),
                                     previous.sidecar_hash if previous else "", o.force, self.fresh)
        lyr_plan = writer.plan_text(self.dataset / f"{stem}.lyrics.txt", lyrics.encode(),
                                    previous.lyrics_hash if previous else "", o.force, self.fresh)
        kept = [p for p in (side_plan, lyr_plan) if p.action == "kept"]

        if o.dry_run:
            where = f"{action} from {src}" if src else action
            self.say(f"task {tid}: {writer.DATASET_DIR}/{audio_name} ({where}); sidecar {side_plan.action}; "
                     f"lyrics {lyr_plan.action}")
            for w in converted.warnings:
                self.say(f"task {tid}: warning: {w}")
            self._count(choice, converted.warnings, kept, tid)
            return

        entry = writer.TaskState(stem, ref, _recorded(side_plan, previous.sidecar_hash if previous else ""),
                                 _recorded(lyr_plan, previous.lyrics_hash if previous else ""),
                                 audio_name if o.audio != "none" else "")
        on_disk = _read_kept_sidecar(side_plan, sidecar, converted.warnings)
        lyrics_text = lyrics if lyr_plan.action != "kept" else lyr_plan.path.read_text(encoding="utf-8")

        _write_files(src, audio_dest, o.audio, move,
                     [p for p in (side_plan, lyr_plan) if p.action in ("new", "update")])
        self.state.record(tid, entry)  # only once the files are on disk
        self._rows(tid, choice, on_disk, lyrics_text, audio_name, stem, duration)
        self._count(choice, converted.warnings, kept, tid)

    def _audio_source(self, tid: int, ref: str, dest: Path, previous) -> tuple[Path | None, bool, str]:
        """(file to read the audio from, whether it is a download to move into place, a word for the plan)."""
        location = locate(ref, self.o.source, tid)
        if location.path is not None:
            return location.path, False, self.o.audio
        # A re-run does not download again what an earlier run already put in place.
        if previous and previous.ref == ref and previous.audio_name == dest.name and dest.exists():
            return dest, False, "same"
        if self.o.dry_run:
            raise _DryDownload(location.url)
        if self.client is None and self.o.source.ls_url and self.o.source.ls_token:
            self.client = make_client(self.o.source.ls_url, self.o.source.ls_token, self.o.source.timeout)
        path = resolve_audio(ref, self.o.source, tid, client=self.client)
        return path, self.o.audio == "copy", "download"

    def _rows(self, tid, choice, sidecar: dict, lyrics: str, audio: str, stem: str, duration: float | None) -> None:
        """The task's manifest and dataset rows; ``audio`` is the audio's file name in the dataset folder (plain
        strings, not Paths: this runs once per task)."""
        folder = writer.DATASET_DIR  # manifest paths are relative to DIR (all files live in DIR/dataset)
        language = sidecar.get("language") or "unknown"
        self.manifest.add({
            "task_id": tid, "annotation_id": choice.id if choice.source == "annotation" else None,
            "prediction_id": choice.id if choice.source == "prediction" else None, "source": choice.source,
            "audio_path": f"{folder}/{audio}", "sidecar_path": f"{folder}/{stem}.json",
            "lyrics_path": f"{folder}/{stem}.lyrics.txt",
            "caption": sidecar.get("caption", ""), "duration": sidecar.get("duration", duration),
            "bpm": sidecar.get("bpm"), "keyscale": sidecar.get("keyscale", ""),
            "timesignature": sidecar.get("timesignature", ""), "language": language,
        })
        lyrics = lyrics.rstrip("\n")
        instrumental = lyrics == INSTRUMENTAL_LYRICS or language == "instrumental"
        seconds = sidecar.get("duration", duration)
        self.any_vocals = self.any_vocals or not instrumental
        self.samples.add({
            "id": str(uuid.uuid5(_UUID_NAMESPACE, f"task-{tid}")),
            "audio_path": os.path.join(self.dataset_abs_str, audio),
            "filename": audio, "caption": sidecar.get("caption", ""), "genre": sidecar.get("genre", ""),
            "lyrics": lyrics, "raw_lyrics": "" if instrumental else lyrics,
            "formatted_lyrics": "" if instrumental else lyrics, "bpm": sidecar.get("bpm"),
            "keyscale": sidecar.get("keyscale", ""), "timesignature": sidecar.get("timesignature", ""),
            "duration": int(seconds) if isinstance(seconds, (int, float)) else 0, "language": language,
            "is_instrumental": instrumental, "custom_tag": "", "labeled": bool(sidecar.get("caption")),
            "prompt_override": None,
        })

    def _count(self, choice, warnings: list[str], kept: list, tid: int) -> None:
        self.summary.converted += 1
        self.summary.from_predictions += choice.source == "prediction"
        if warnings:
            self.summary.with_warnings += 1
            if not self.o.dry_run:
                self.warnings.add({"task_id": tid, "warnings": warnings})
        if kept:
            self.summary.kept += 1
            files = ", ".join(p.path.name for p in kept)
            self._problem(tid, "kept", f"{files} edited by hand since the last run; not overwritten (use --force)",
                          count=False)

    def _problem(self, tid, status: str, reason: str, label: str = "", count: bool = True) -> None:
        if count:
            setattr(self.summary, status, getattr(self.summary, status) + 1)
        label = label or f"task {tid}"
        text = reason if reason.startswith(label) else f"{label}: {reason}"
        self.say(f"{status}: {text}")
        if not self.o.dry_run:
            self.problems.add({"task_id": tid, "status": status, "reason": reason})

    # -- end of run ----------------------------------------------------------------------------------------------

    def finish(self) -> None:
        if self.o.dry_run:
            return
        self.state.compact()
        stamp = _now()
        counts = self.summary.counts()
        out = self.out
        try:
            (out / writer.MANIFEST).parent.mkdir(parents=True, exist_ok=True)
            tmp = out / f".{writer.MANIFEST}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                for line in self.manifest.lines():
                    handle.write(line)
            tmp.replace(out / writer.MANIFEST)
            writer.write_json_with_lists(out / writer.INDEX, {"generated_at": stamp, "export": str(self.o.export),
                                                              "counts": counts}, {"records": self.manifest.lines()})
            metadata = {"name": out.resolve().name, "created_at": stamp, "num_samples": self.samples.count,
                        "custom_tag": "", "tag_position": "prepend",
                        "all_instrumental": self.samples.count > 0 and not self.any_vocals, "genre_ratio": 0}
            writer.write_json_with_lists(out / writer.ACESTEP_DATASET, {"metadata": metadata},
                                         {"samples": self.samples.lines()})
            report = {"generated_at": stamp, "export": str(self.o.export), "out": str(out), "counts": counts,
                      "exit_code": self.summary.exit_code}
            writer.write_json_with_lists(out / writer.REPORT, report,
                                         {"problems": self.problems.lines(), "warnings": self.warnings.lines()})
        finally:
            for spool in (self.manifest, self.samples, self.problems, self.warnings):
                spool.discard()



def provenance(tid: int, choice, ref: str) -> dict:
    """Where a sidecar's values came from: the task, the annotation (annotator, ground truth) or the prediction
    (model version), its last update and the audio reference as the export holds it."""
    if choice.source == "annotation":
        return {"task_id": tid, "source": "annotation", "annotation_id": choice.id, "annotator": choice.annotator,
                "updated_at": choice.updated_at, "audio": ref, "ground_truth": choice.ground_truth}
    return {"task_id": tid, "source": "prediction", "prediction_id": choice.id, "updated_at": choice.updated_at,
            "audio": ref, "model_version": choice.model_version}


def _write_files(src: Path | None, audio_dest: Path, mode: str, move: bool, plans: list) -> None:
    """Put one task's audio and text files in place."""
    if src is not None:
        writer.place_audio(src, audio_dest, mode, move=move)
    for plan in plans:
        writer.atomic_write(plan.path, plan.data)


def _recorded(plan, previous_hash: str) -> str:
    """The hash to remember for a text file: what we wrote, or for a kept file the hash of what we last wrote
    (empty when we never wrote it), so that it stays protected on the next run."""
    return previous_hash if plan.action == "kept" else plan.new_hash


class _DryDownload(Exception):
    """Dry run: the audio would be downloaded from this URL."""


def _read_kept_sidecar(plan, ours: dict, warnings: list[str]) -> dict:
    """The sidecar values that end up in the dataset: ours, or the hand-edited file's when it was kept."""
    if plan.action != "kept":
        return ours
    try:
        data = json.loads(plan.path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    warnings.append(f"{plan.path.name} (kept, edited by hand) is not a JSON object; the dataset files use the "
                    "export's values")
    return ours


def convert(options: Options, say=None, progress_factory=None) -> Summary:
    """Convert ``options.export`` into ``options.out``; returns the run's Summary (its ``fatal`` names an
    unusable input). ``say`` prints one line; ``progress_factory(total_bytes)`` returns ``update(bytes_read)``."""
    say = say or (lambda line: print(line, file=sys.stderr))
    export = Path(options.export)
    if not export.is_file():
        return Summary(fatal=f"{export} does not exist or is not a file; pass the JSON file Label Studio exported")
    if options.audio not in AUDIO_MODES:
        return Summary(fatal=f"--audio must be one of {', '.join(AUDIO_MODES)}")
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        return Summary(fatal=f"--out {out} exists and is not a folder")
    run = Run(options, say)
    update = progress_factory(export.stat().st_size) if progress_factory else None
    try:
        for index, task in enumerate(iter_tasks(export, progress=update)):
            if not run.started:
                try:
                    run.start()
                except OSError as exc:
                    run.summary.fatal = f"cannot create the output folder {out}: {exc.strerror}"
                    return run.summary
            try:
                run.task(index, task)
            except _DryDownload as exc:
                run.say(f"task {task_id(task)}: would download {exc}")
                run.summary.converted += 1
    except ExportError as exc:
        run.summary.fatal = str(exc)
    finally:
        run.state.close()
    if run.started:
        run.finish()
    elif not run.summary.fatal:
        say(f"{export} holds no tasks; nothing to convert")
    return run.summary
