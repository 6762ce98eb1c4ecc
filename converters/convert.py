"""The export-to-dataset run: for each task, choose a result list, find and measure its audio, build the song,
write audio + sidecar + lyrics, and at the end the manifest, index, ACE-Step dataset file and report.

One task is in memory at a time; rows for the final files are spooled to disk. A task that fails is reported with
its id and the run goes on. A run that cannot go on (the export is cut off or unreadable part-way, the disk is
full) stops: the final files hold the tasks converted before the stop, and the report and the summary name them.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import sys
from array import array
from dataclasses import dataclass, field, replace
from pathlib import Path

from label_config.sidecar import (
    INSTRUMENTAL_LYRICS, LORA_TAB_AUDIO, acestep_metadata, acestep_sample, lyrics_file_text, to_sidecar,
    vocal_status,
)
from ls_acestep.files import OutsideFolderError, atomic_write, leaves_folder, read_inside
from ls_acestep.media import MediaError, MediaSource, locate, make_client, resolve_audio

from .acestep_outputs import (
    CSV_NAME, LEGACY_LYRICS_SUFFIX, LYRICS_SUFFIX, csv_row, dataset_base, duration_notes, escapes, plan_absent,
    write_csv,
)
from .audio_files import AudioReadError, measure_duration, place_audio
from .folder_lock import FolderBusy, lock_folder, unlock_folder
from .export_reader import ExportError, TaskError, audio_ref, choose, iter_tasks, strict_loads, task_id
from .json_text import sidecar_bytes
from .outputs import ACESTEP_DATASET, DATASET_DIR, INDEX, MANIFEST, REPORT, STATE_DIR, manifest_row
from .results import export_duration, song_from_results
from .spool import Spool, write_json_with_lists, write_lines
from .state import State, TaskState
from .stems import StemBook, stem_and_ext
from .text_plan import TextPlan, plan_text, recorded_hash

AUDIO_MODES = ("copy", "link", "none")
EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2
# Write errors after which no further task can be written: the run stops instead of failing every task after it.
_STOPPING_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                    errno.EROFS: "the file system is read-only"}
_IDS_SHOWN = 20  # runs of task ids printed in the summary line; the report lists them all


@dataclass
class Options:
    export: Path
    out: Path
    source: MediaSource = field(default_factory=MediaSource)
    audio: str = "copy"  # copy | link | none
    use_predictions: bool = False
    force: bool = False
    dry_run: bool = False
    acestep_dir: Path | None = None  # ACE-Step's working directory: dataset JSON audio paths relative to it


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
    fatal: str = ""  # why the input is unusable (exit 2)
    stopped: str = ""  # why the run stopped before the end of the export although the input was usable (exit 1)
    converted_before_stop: list[int] | None = None  # task ids, when the run stopped (or the export broke) part-way
    report: str = ""  # the report's path, once it is written
    not_written: list[str] = field(default_factory=list)  # "file: reason" for final files that could not be written

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return EXIT_UNUSABLE
        if self.stopped or self.not_written:
            return EXIT_PROBLEMS
        return EXIT_PROBLEMS if (self.skipped or self.failed or self.kept) else EXIT_OK

    def counts(self) -> dict:
        return {k: getattr(self, k) for k in
                ("tasks", "converted", "skipped", "failed", "kept", "from_predictions", "with_warnings")}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(slots=True)
class AudioPlan:
    """Where one task's audio comes from and where it goes. ``name`` is its file name in the dataset folder (the
    manifest names it even with --audio none); ``src`` is None when nothing is placed."""

    name: str
    duration: float | None  # seconds: measured from the file, or what the export says with --audio none
    src: Path | None = None
    dest: Path | None = None
    move: bool = False  # a download, moved into place instead of copied
    action: str = "none"  # copy | link | none | same | download: a word for the dry-run plan

    @property
    def recorded_name(self) -> str:
        """The audio's name as the state remembers it: "" when none was placed."""
        return self.name if self.dest is not None else ""


@dataclass(slots=True)
class TextPlans:
    """One task's two text files and what happens to each."""

    sidecar: TextPlan
    lyrics: TextPlan | None  # None: the song has no words and no lyrics file is there
    legacy: TextPlan | None = None  # a <stem>.lyrics.txt (earlier versions wrote it): removed when ours

    @property
    def plans(self) -> list[TextPlan]:
        return [p for p in (self.sidecar, self.lyrics, self.legacy) if p is not None]

    @property
    def kept(self) -> list[TextPlan]:
        return [p for p in self.plans if p.action == "kept"]

    @property
    def to_write(self) -> list[TextPlan]:
        return [p for p in self.plans if p.action in ("new", "update")]

    @property
    def to_remove(self) -> list[TextPlan]:
        return [p for p in self.plans if p.action == "remove"]


class Run:
    """State of one conversion run; ``convert`` drives it."""

    def __init__(self, options: Options, say):
        self.o = options
        self.say = say  # one line of human output
        self.out = Path(options.out)
        self.dataset = self.out / DATASET_DIR
        # the ACE-Step dataset file's audio paths: absolute, or relative to --acestep-dir (checked by convert())
        self.dataset_abs_str = dataset_base(self.dataset, options.acestep_dir)[0]
        self.with_genre = 0  # songs whose genre only the dataset JSON carries (a folder scan drops it)
        self.summary = Summary()
        self.state = State(self.out)
        self.stems = StemBook()
        self.client = None
        self.inside = [self.out / STATE_DIR, self.dataset]  # folders that must not lead out of DIR
        if options.source.cache_dir is None:  # downloads are kept in DIR so that a re-run reuses them
            cache = self.out / STATE_DIR / "cache"
            self.o = replace(options, source=replace(options.source, cache_dir=cache))
            self.inside.append(cache)
        # One way of finding a task's audio for the whole run, chosen once.
        self.plan_audio = self._no_audio if options.audio == "none" else self._placed_audio
        self.started = False
        self.fresh = False
        self.lock = None
        self.seen: set[int] = set()  # task ids met so far: a repeated id is converted once
        self.converted_ids = array("q")  # task ids written, in export order (8 bytes each)
        self.any_vocals = False  # for the dataset file's all_instrumental

    def start(self) -> None:
        """Lock the output folder, read its state, create the folders and spools; called at the first task, so an
        unusable export writes nothing. Raises FolderBusy, OutsideFolderError or OSError."""
        self.started = True
        work = self.out / STATE_DIR
        if not self.o.dry_run:
            for folder in self.inside:
                if (folder.is_symlink() or folder.exists()) and leaves_folder(folder, self.out):
                    raise OutsideFolderError(errno.EPERM, f"{folder} leads out of the output folder (a symbolic "
                                             f"link to {os.path.realpath(folder)}); nothing is written through it: "
                                             "remove the link or choose another --out")
            self.lock = lock_folder(work)  # before the state is read: another run may be rewriting it
        for warning in self.state.load():
            self.say(f"warning: {warning}")
        self.stems = StemBook({t: e.stem for t, e in self.state.tasks.items()})
        # An empty (or missing) dataset folder needs no per-file look-ups: stems are distinct within a run.
        self.fresh = not self.state.tasks and not (self.dataset.is_dir() and any(os.scandir(self.dataset)))
        if self.o.dry_run:
            return
        self.dataset.mkdir(parents=True, exist_ok=True)
        for leftover in work.glob(".*.jsonl"):  # spools of an interrupted run
            leftover.unlink()
        self.manifest = Spool(work, "manifest")
        self.samples = Spool(work, "samples")
        self.problems = Spool(work, "problems")
        self.warnings = Spool(work, "warnings")
        self.csv_rows = Spool(work, "csv")

    def close(self) -> None:
        self.state.close()
        unlock_folder(self.lock)
        self.lock = None

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
            if tid in self.seen:
                return self._problem(tid, "skipped", f"task id {tid} appears again (#{index + 1} in the export); "
                                     "converted once, from its first appearance")
            self.seen.add(tid)
            choice, reason = choose(task, self.o.use_predictions)
            if choice is None:
                return self._problem(tid, "skipped", reason)
            self._convert(tid, task, choice)
        except TaskError as exc:
            self._problem(tid, "failed", f"malformed task: {exc}", label)
        except (MediaError, AudioReadError) as exc:
            self._problem(tid, "failed", str(exc), label)
        except OutsideFolderError as exc:
            self._problem(tid, "failed", f"refused: {exc.filename} is {exc.strerror} (not read, not overwritten; "
                          "remove the link)", label)
        except OSError as exc:  # reading the source audio or writing into DIR
            self._problem(tid, "failed", f"file error: {exc}", label)
            self._stop_on(exc, label)
        except _DryDownload:
            raise
        except Exception as exc:  # one odd task must not end the run: report it and go on
            self._problem(tid, "failed", f"unexpected {type(exc).__name__}: {exc}; please report this with the "
                          "task's JSON", label)

    def _stop_on(self, exc: OSError, label: str) -> None:
        """Stop the run after a write error that no later task can escape (disk full, read-only)."""
        why = _STOPPING_ERRNOS.get(exc.errno)
        if why and not self.summary.stopped:
            self.summary.stopped = f"{why} ({exc.strerror}) while writing {label}; the tasks after it were not read"

    def _convert(self, tid: int, task: dict, choice) -> None:
        """Plan one task's files, then print the plan (dry run) or write them."""
        ref = audio_ref(task)
        stem, ext = stem_and_ext(ref)
        stem = self.stems.assign(tid, stem)
        previous = self.state.tasks.get(tid)
        audio = self.plan_audio(tid, task, choice, ref, f"{stem}{ext}", previous)

        converted = song_from_results(choice.result, audio.duration)
        warnings = converted.warnings
        if audio.dest is not None and ext not in LORA_TAB_AUDIO:
            warnings.append(f"audio {ext or '(no extension)'}: ACE-Step's LoRA training tab scans only "
                            f"{' '.join(LORA_TAB_AUDIO)}; convert the file")
        if previous and previous.stem != stem:
            warnings.append(f"the audio file name changed: files are now {stem}.*; the previous run's "
                            f"{previous.stem}.* are left in {DATASET_DIR}/ (delete them)")
        lyrics = lyrics_file_text(converted.song)
        sidecar = to_sidecar(converted.song, provenance(tid, choice, ref), lyrics)
        warnings.extend(self._acestep_notes(converted.song, audio))
        texts = self._plan_texts(stem, sidecar, lyrics, previous)
        if self.o.dry_run:
            self._say_plan(tid, audio, texts, warnings)
        else:
            self._write(tid, choice, ref, stem, audio, texts, sidecar, lyrics, previous, warnings)
        self._count(choice, warnings, texts.kept, tid)

    # How a task's audio is found: one method per --audio mode family, chosen once per run.

    def _no_audio(self, tid: int, task: dict, choice, ref: str, name: str, previous) -> AudioPlan:
        """--audio none: nothing is read or placed; the length is what the export says (no Path per task)."""
        return AudioPlan(name, export_duration(choice.result, task.get("data")))

    def _placed_audio(self, tid: int, task: dict, choice, ref: str, name: str, previous) -> AudioPlan:
        """--audio copy/link: find the file (or download it) and measure it."""
        dest = self.dataset / name
        src, move, action = self._audio_source(tid, ref, dest, previous)
        return AudioPlan(name, measure_duration(src), src, dest, move, action)

    def _audio_source(self, tid: int, ref: str, dest: Path, previous) -> tuple[Path | None, bool, str]:
        """(file to read the audio from, whether it is a download to move into place, a word for the plan)."""
        location = locate(ref, self.o.source, tid)
        if location.path is not None:
            return location.path, False, self.o.audio
        # A re-run does not download again what an earlier run already put in place.
        if previous and previous.ref == ref and previous.audio_name == dest.name and dest.exists() \
                and not leaves_folder(dest, self.out):  # a link planted there is not read (nor copied over)
            return dest, False, "same"
        if self.o.dry_run:
            raise _DryDownload(location.url)
        if self.client is None and self.o.source.ls_url and self.o.source.ls_token:
            self.client = make_client(self.o.source.ls_url, self.o.source.ls_token, self.o.source.timeout)
        path = resolve_audio(ref, self.o.source, tid, client=self.client)
        return path, self.o.audio == "copy", "download"

    def _acestep_notes(self, song, audio: AudioPlan) -> list[str]:
        """What ACE-Step will make of this song that the annotator may not expect: unknown vocals or a vocal song
        without lyrics (both train as [Instrumental]), its length, linked audio it refuses."""
        notes = [note for note in (vocal_status(song)[1],) if note]
        if audio.duration is not None:
            notes += duration_notes(audio.duration)
        if self.o.acestep_dir is not None and self.o.audio == "link" and audio.src is not None \
                and escapes(audio.src, self.o.acestep_dir):
            notes.append(f"--audio link: ACE-Step resolves the link to {audio.src}, outside --acestep-dir, and "
                         "refuses it; use --audio copy")
        self.with_genre += bool(song.genres)
        return notes

    def _plan_texts(self, stem: str, sidecar: dict, lyrics: str, previous) -> TextPlans:
        """The sidecar, and ``<stem>.txt`` only for a song with words (any lyrics file makes ACE-Step's folder
        scan call the song vocal); an old ``<stem>.lyrics.txt`` of ours goes (the current release reads it first)."""
        recorded = previous.lyrics_hash if previous else ""
        side = plan_text(self.dataset / f"{stem}.json", sidecar_bytes(sidecar),
                         previous.sidecar_hash if previous else "", self.o.force, self.fresh, self.out)
        path = self.dataset / f"{stem}{LYRICS_SUFFIX}"
        read = lambda p: read_inside(p, self.out)  # noqa: E731
        if lyrics.strip() not in ("", INSTRUMENTAL_LYRICS):
            lyr = plan_text(path, lyrics.encode(), recorded, self.o.force, self.fresh, self.out)
        else:
            lyr = None if self.fresh else plan_absent(path, recorded, self.o.force, read)
        legacy = None if self.fresh else plan_absent(self.dataset / f"{stem}{LEGACY_LYRICS_SUFFIX}", recorded,
                                                     self.o.force, read)
        return TextPlans(side, lyr, legacy)

    def _say_plan(self, tid: int, audio: AudioPlan, texts: TextPlans, warnings: list[str]) -> None:
        where = f"{audio.action} from {audio.src}" if audio.src else audio.action
        self.say(f"task {tid}: {DATASET_DIR}/{audio.name} ({where}); sidecar {texts.sidecar.action}; "
                 f"lyrics {texts.lyrics.action if texts.lyrics else 'none (no words)'}")
        for w in warnings:
            self.say(f"task {tid}: warning: {w}")

    def _write(self, tid: int, choice, ref: str, stem: str, audio: AudioPlan, texts: TextPlans, sidecar: dict,
               lyrics: str, previous, warnings: list[str]) -> None:
        """Put the task's files in place, record them in the state, add its rows to the run-level files."""
        entry = TaskState(stem, ref, recorded_hash(texts.sidecar, previous.sidecar_hash if previous else ""),
                          _lyrics_hash(texts.lyrics, previous.lyrics_hash if previous else ""),
                          audio.recorded_name)
        on_disk = _read_kept_sidecar(texts.sidecar, sidecar, warnings)
        lyrics_text = _lyrics_held(texts.lyrics, lyrics)
        if audio.src is not None:
            place_audio(audio.src, audio.dest, self.o.audio, move=audio.move)
        for plan in texts.to_write:
            atomic_write(plan.path, plan.data)
        for plan in texts.to_remove:
            plan.path.unlink(missing_ok=True)
        self.state.record(tid, entry)  # only once the files are on disk
        self.manifest.add(manifest_row(tid, choice, on_disk, audio.name, stem, audio.duration))
        sample = acestep_sample(tid, self.dataset_abs_str, audio.name, on_disk, lyrics_text, audio.duration)
        self.any_vocals = self.any_vocals or not sample["is_instrumental"]
        self.samples.add(sample)
        row = csv_row(audio.name, on_disk)
        if row is not None:
            self.csv_rows.add({"row": row})
        self.converted_ids.append(tid)

    def _count(self, choice, warnings: list[str], kept: list, tid: int) -> None:
        self.summary.converted += 1
        self.summary.from_predictions += choice.source == "prediction"
        if warnings:
            self.summary.with_warnings += 1
            if not self.o.dry_run:
                self._spool(self.warnings, {"task_id": tid, "warnings": warnings}, f"task {tid}")
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
            self._spool(self.problems, {"task_id": tid, "status": status, "reason": reason}, label)

    def _spool(self, spool: Spool, row: dict, label: str) -> None:
        """Add a row for the report; a failed write is said and stops the run, never raised from an error
        handler."""
        try:
            spool.add(row)
        except OSError as exc:
            self.say(f"error: cannot record {label} for the report: {exc}")
            self._stop_on(exc, label)
            if not self.summary.stopped:
                self.summary.stopped = f"the report's spool cannot be written ({exc}); the tasks after {label} " \
                                       "were not read"

    # -- end of run ----------------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Write the final files from the spools, each on its own: one that fails (a full disk) is named in
        ``summary.not_written`` and the others are still tried; the report is written last and says which."""
        if self.o.dry_run:
            return
        try:
            self.state.compact()
        except OSError as exc:  # the journal as appended still holds every task
            self.say(f"warning: the state journal was not compacted: {exc}")
        stamp = _now()
        summary, out = self.summary, self.out
        if summary.stopped or summary.fatal:
            summary.converted_before_stop = self.converted_ids.tolist()
        counts = summary.counts()
        export = str(self.o.export)
        try:
            self._final(MANIFEST, write_lines, self.manifest.lines())
            self._final(INDEX, write_json_with_lists, {"generated_at": stamp, "export": export, "counts": counts},
                        {"records": self.manifest.lines()})
            # in DIR/dataset and in DIR: ACE-Step reads the CSVs of the folder it scans, not of its subfolders
            self._final(f"{DATASET_DIR}/{CSV_NAME}", write_csv, self.csv_rows.lines())
            self._final(CSV_NAME, write_csv, self.csv_rows.lines())
            metadata = acestep_metadata(out.resolve().name, stamp, self.samples.count, self.any_vocals)
            self._final(ACESTEP_DATASET, write_json_with_lists, {"metadata": metadata},
                        {"samples": self.samples.lines()})
            report = {"generated_at": stamp, "export": export, "out": str(out), "counts": counts,
                      "exit_code": summary.exit_code, "acestep": self._acestep_report()}
            if summary.converted_before_stop is not None:
                report["stopped"] = {"reason": summary.fatal or summary.stopped, "tasks_read": summary.tasks,
                                     "converted_task_ids": summary.converted_before_stop}
            if summary.not_written:
                report["not_written"] = list(summary.not_written)
            if self._final(REPORT, write_json_with_lists, report,
                           {"problems": self.problems.lines(), "warnings": self.warnings.lines()}):
                summary.report = str(out / REPORT)
        finally:
            for spool in (self.manifest, self.samples, self.problems, self.warnings, self.csv_rows):
                spool.discard()

    def _acestep_report(self) -> dict:
        """Run-level facts about how ACE-Step will read this folder (docs/acestep.md)."""
        where = (f"audio paths relative to --acestep-dir {self.o.acestep_dir}: load it from there"
                 if self.o.acestep_dir is not None else
                 "absolute audio paths; ACE-Step loads the file only when it and the audio lie under its working "
                 "directory (pass --acestep-dir to check that and write paths relative to it)")
        notes = [f"{ACESTEP_DATASET}: {where}",
                 f"{DATASET_DIR}/: lyrics in <stem>{LYRICS_SUFFIX} only for songs with words; {CSV_NAME} carries "
                 "caption, BPM and key for releases before mid-February 2026 (they read no JSON)"]
        if self.with_genre:
            notes.append(f"{self.with_genre} song(s) have a genre: only {ACESTEP_DATASET} carries it; a folder "
                         "scan drops it (a sample picked for genre training then gets an empty prompt)")
        return {"dataset_paths": "relative" if self.o.acestep_dir is not None else "absolute",
                "songs_with_genre": self.with_genre, "notes": notes}

    def _final(self, name: str, write, *args) -> bool:
        """Write one final file with ``write(path, *args)``; False (and the file named as not written) on a
        write error."""
        try:
            write(self.out / name, *args)
            return True
        except OSError as exc:
            self.summary.not_written.append(f"{name}: {exc.strerror or exc}")
            return False


def provenance(tid: int, choice, ref: str) -> dict:
    """Where a sidecar's values came from: the task, the annotation (annotator, ground truth) or the prediction
    (model version), its last update and the audio reference as the export holds it."""
    if choice.source == "annotation":
        return {"task_id": tid, "source": "annotation", "annotation_id": choice.id, "annotator": choice.annotator,
                "updated_at": choice.updated_at, "audio": ref, "ground_truth": choice.ground_truth}
    return {"task_id": tid, "source": "prediction", "prediction_id": choice.id, "updated_at": choice.updated_at,
            "audio": ref, "model_version": choice.model_version}


def _lyrics_hash(plan: TextPlan | None, previous_hash: str) -> str:
    """The lyrics hash to remember: of what we wrote, the previous one for a kept file, "" when no file of ours
    is left."""
    if plan is None or plan.action == "remove":
        return ""
    return recorded_hash(plan, previous_hash)


def _lyrics_held(plan: TextPlan | None, lyrics: str) -> str:
    """The lyrics the dataset file gets: ours, a kept hand-edited file's, or [Instrumental] without a file."""
    if plan is None or plan.action == "remove":
        return INSTRUMENTAL_LYRICS + "\n"
    if plan.action == "kept":
        return plan.current.decode("utf-8", errors="replace") if plan.current is not None else lyrics
    return lyrics


class _DryDownload(Exception):
    """Dry run: the audio would be downloaded from this URL."""


def _read_kept_sidecar(plan: TextPlan, ours: dict, warnings: list[str]) -> dict:
    """The sidecar values that end up in the dataset: ours, or the hand-edited file's when it was kept."""
    if plan.action != "kept":
        return ours
    try:
        data = strict_loads(plan.current)  # NaN or Infinity would make the dataset files invalid JSON
        if isinstance(data, dict):
            return data
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        pass
    warnings.append(f"{plan.path.name} (kept, edited by hand) is not a JSON object (or holds NaN/Infinity); "
                    "the dataset files use the export's values")
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
    base_error = dataset_base(out / DATASET_DIR, options.acestep_dir)[1]
    if base_error:
        return Summary(fatal=base_error)
    run = Run(options, say)
    update = progress_factory(export.stat().st_size) if progress_factory else None
    try:
        try:
            _run_tasks(run, iter_tasks(export, progress=update), out)
            if not run.started and not run.summary.fatal:
                say(f"{export} holds no tasks; nothing to convert")
        except ExportError as exc:  # cut off or unreadable part-way: what was converted is still finished below
            run.summary.fatal = str(exc)
        if run.started:
            run.finish()  # still holding the folder's lock
            _say_stop(run.summary, say)
    finally:
        run.close()
    return run.summary


def _run_tasks(run: Run, tasks, out: Path) -> None:
    """Convert task after task until the export ends, the run stops, or the output folder proves unusable."""
    for index, task in enumerate(tasks):
        if not run.started and not _started(run, out):
            return
        try:
            run.task(index, task)
        except _DryDownload as exc:
            run.say(f"task {task_id(task)}: would download {exc}")
            run.summary.converted += 1
        if run.summary.stopped:
            return


def _started(run: Run, out: Path) -> bool:
    """Start the run at its first task; False (with ``summary.fatal`` set) when the output folder is unusable."""
    try:
        run.start()
        return True
    except FolderBusy as exc:
        run.summary.fatal = (f"{out} is busy: another ls-acestep convert is writing into it (it holds {exc}); "
                             "wait for it to finish or choose another --out")
    except OutsideFolderError as exc:
        run.summary.fatal = exc.strerror
    except OSError as exc:
        run.summary.fatal = f"cannot create the output folder {out}: {exc.strerror}"
    run.started = False
    run.close()
    return False


def _say_stop(summary: Summary, say) -> None:
    """Tell what a run that stopped early did and did not write."""
    if summary.stopped:
        say(f"stopped: {summary.stopped}")
    if summary.converted_before_stop is not None:
        ids = summary.converted_before_stop
        say(f"converted before the stop: {len(ids)} task(s)" + (f": {id_ranges(ids)}" if ids else "")
            + ("; their files are complete" if ids else ""))
    for line in summary.not_written:
        say(f"not written: {line}")


def id_ranges(ids: list[int], shown: int = _IDS_SHOWN) -> str:
    """Task ids as runs in export order ("1-4, 7, 9-10"); past ``shown`` runs, a count and a pointer to the
    report."""
    runs: list[list[int]] = []
    for tid in ids:
        if runs and tid == runs[-1][1] + 1:
            runs[-1][1] = tid
        else:
            runs.append([tid, tid])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:shown])
    if len(runs) > shown:
        text += f", ... ({len(runs) - shown} more runs of ids: see the report's stopped.converted_task_ids)"
    return text
