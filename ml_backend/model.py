"""``SongModel``: one ``/predict`` request's songs from task data to Label Studio predictions.

For every task: resolve the audio reference (``ls_acestep.media``; downloads run side by side, each bounded by
FETCH_TIMEOUT and MAX_DOWNLOAD_MB), hash the file and look in the prediction cache (a song another request or
worker is computing is waited for, not computed twice), decode at 16 kHz (``analysis/audio``), analyse tempo, key,
meter and sections (``analysis/music``), plan regions and pack them into model windows of at most 30 s
(``describe/windows``). Then ALL windows of ALL tasks go to the engine in one call, so it can batch them, and the
songs' voiced audio to the lyrics engine (``lyrics/stage``). Per song the descriptions are merged back into
regions and song fields (``prediction/merge``), lyrics placed into the regions, a caption written
(``describe/caption``) and the result list built for the request's label config (``prediction/predictions``).

A task that cannot be fetched or decoded gets an empty prediction under ``<model_version>-failed`` (so Label
Studio's Retrieve Predictions, preannotate and the worker predict it again next time) and a log line naming it;
the other tasks are still predicted. Heavy modules are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from label_config.vocabulary import SECTION_LABELS

from ml_backend.prediction.cache import PredictionCache, cache_key, file_sha256
from ml_backend.prediction.merge import RegionPlan, build_song, region_vocals, song_score
from ml_backend.prediction.predictions import ConfigTargets, audio_reference, empty_prediction, make_prediction, parse_config

log = logging.getLogger(__name__)

MEDIA_CACHE = "media"  # downloads land in MODEL_DIR/media
SONG_LOCKS = "song-locks"  # MODEL_DIR/song-locks/<cache key>.lock: one process computes a song, the others wait
# Downloads in flight per request: a host that trickles holds one slot (up to FETCH_TIMEOUT), the others go on.
FETCH_PARALLEL = 8
# Decoded audio (16 kHz float32: 230 MB per hour) held for one engine call at most; a larger request is split.
MAX_PENDING_AUDIO_SECONDS = 3600.0


_WARM_LOCK = threading.Lock()  # one warm-up at a time: a request during it waits rather than doing it again
_analysis_warm = False


def warm_analysis() -> None:
    """Run the analysis once on a synthetic clip (imports, JIT code), one thread at a time: the server warms up in
    a background thread while it already answers, and a request that needs the analysis meanwhile waits here
    instead of importing and compiling the same code beside it on the same cores. Later calls return at once."""
    global _analysis_warm
    if _analysis_warm:
        return
    with _WARM_LOCK:
        if not _analysis_warm:
            from ml_backend.analysis.music import warm_up

            warm_up()
            _analysis_warm = True


class TaskError(Exception):
    """This task cannot be predicted (audio missing, unreadable, undecodable); the message says why."""


def version_parameters(settings, prompt: str) -> dict:
    """Everything that changes a prediction besides the audio and the label config (hashed into model_version).
    Read from the settings alone, so ``/setup`` never has to load the model."""
    params: dict = {
        "engine": settings.engine,
        "segmentation": settings.segmentation,
        "segment_seconds": settings.segment_seconds,
        "overlap_seconds": settings.overlap_seconds,
    }
    if settings.engine != "dsp":  # the DSP engine ignores the model, the prompt and sampling
        params.update(model_id=settings.model_id, prompt=prompt, max_new_tokens=settings.max_new_tokens,
                      temperature=settings.temperature, top_p=settings.top_p)
        if settings.pack_windows:  # what the model hears per window, and the prompt of packed windows
            from ml_backend.describe.prompt import packed_prompt

            params.update(pack_windows=True, packed_prompt=packed_prompt(settings))
    from ml_backend.lyrics import lyrics_parameters

    params.update(lyrics_parameters(settings))  # nothing with LYRICS_ENGINE=none
    return params


def compute_model_version(settings, prompt: str) -> str:
    """``<engine>-<model name>-<10 hex of the parameters' hash>``, e.g. ``transformers-Qwen2-Audio-7B-Instruct-
    3f9a0c1b2d``; the DSP engine has no model name."""
    params = version_parameters(settings, prompt)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    if settings.engine == "dsp":
        return f"dsp-{digest}"
    model_name = Path(settings.model_id.rstrip("/\\")).name or "model"
    return f"{settings.engine}-{model_name}-{digest}"


def media_source(settings):
    """Where task audio comes from and the limits on fetching it, from the settings (downloads cached under
    MODEL_DIR/media)."""
    from ls_acestep.media import MB, MediaSource, parse_allowed_hosts

    return MediaSource(
        ls_url=settings.label_studio_url,
        ls_token=settings.label_studio_api_key,
        document_root=Path(settings.local_files_document_root) if settings.local_files_document_root else None,
        cache_dir=Path(settings.model_dir) / MEDIA_CACHE,
        timeout=settings.fetch_timeout,
        max_bytes=int(settings.max_download_mb * MB),
        cache_bytes=int(settings.media_cache_mb * MB),
        allowed_hosts=parse_allowed_hosts(settings.allowed_media_hosts),
        hosts_only=settings.media_hosts_only,
    )


@dataclass
class SongJob:
    """One task on its way through a request: where its audio is, what the analysis found, its windows."""

    index: int  # position in the request's task list
    task_id: object
    key: str  # prediction cache key
    analysis: object = None  # analysis.MusicAnalysis
    regions: list = field(default_factory=list)  # list[analysis.Section]
    windows: list = field(default_factory=list)  # list[windows.Window]
    requests: list = field(default_factory=list)  # list[engines.WindowRequest], same order as windows
    audio: object = None  # the decoded song (16 kHz) while the lyrics stage needs it; None with lyrics off
    transcript: object = None  # lyrics.types.Transcript, None with lyrics off
    lock: object = None  # SongLock held while this song is computed (released once its prediction is cached)


class SongLock:
    """An exclusive ``flock`` on MODEL_DIR/song-locks/<cache key>.lock: concurrent requests for one uncached song,
    in any thread or gunicorn worker, compute it once; the others wait and read the cache. The file is unlinked
    before it is unlocked, so that the folder does not fill up and a newcomer never waits on a finished song."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    @classmethod
    def take(cls, folder: Path, key: str, wait: bool) -> "SongLock | None":
        """The lock for ``key``; None when another holds it and ``wait`` is false. A folder that cannot be
        written gives a lock that holds nothing (the song is then maybe computed twice, never not at all)."""
        import fcntl

        path = folder / f"{key}.lock"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            log.warning("song lock %s unavailable (%s); computing without it", path, exc)
            return cls(path, None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


@dataclass
class TaskResult:
    """One task's answer: the prediction for Label Studio, and why it is empty when the task failed (the worker
    and ``preannotate`` put that reason in their failed lists)."""

    prediction: dict
    failure: str = ""  # "" when the song was predicted


@dataclass
class ModelStats:
    """Counters of this process, shown by /metrics."""

    predictions: int = 0
    failures: int = 0
    windows: int = 0
    engine_calls: int = 0  # describe_windows calls (one per request unless it was split)
    seconds: float = 0.0


class SongModel:
    """Predicts songs for Label Studio; the engine (the model) is loaded once, on first use or by ``load()``."""

    def __init__(self, settings):
        from ml_backend.describe.prompt import analysis_prompt, packed_prompt

        self.settings = settings
        self.prompt = analysis_prompt(settings)
        self.packed_prompt = packed_prompt(settings)  # for windows that hold several regions
        self._version = compute_model_version(settings, self.prompt)
        self.cache = PredictionCache(settings.model_dir)
        self.stats = ModelStats()
        from ml_backend.lyrics.stage import LyricsStage

        self.lyrics = LyricsStage(settings)  # the lyrics engine, loaded on first use like the description engine
        self._engine = None
        self.load_error = ""  # why the engine could not be created, until it can
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one generate at a time: a GPU does not gain from interleaving
        self._ls_client = None  # label-studio-sdk client, made when the first task downloads from Label Studio
        self._ls_client_lock = threading.Lock()

    def model_version(self) -> str:
        """The model version Label Studio stores with each prediction (cheap: no model load)."""
        return self._version

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self):
        """The engine, created (and its model loaded) on first use."""
        if self._engine is None:
            with self._load_lock:
                if self._engine is None:
                    from ml_backend.describe.engines import create_engine

                    started = time.perf_counter()
                    try:
                        self._engine = create_engine(self.settings)
                    except Exception as exc:
                        self.load_error = f"{type(exc).__name__}: {exc}"  # shown by /health
                        raise
                    self.load_error = ""
                    log.info("engine %s%s ready in %.1f s", self.settings.engine,
                             "" if self.settings.engine == "dsp" else f" ({self.settings.model_id})",
                             time.perf_counter() - started)
        return self._engine

    def load(self) -> None:
        """Warm up: JIT-compile the analysis and load the model, so that the first request is not the slow one."""
        warm_analysis()
        _ = self.engine
        self.lyrics.load()

    # --- the request -----------------------------------------------------------------------------------------

    def predict(self, tasks: list[dict], label_config: str) -> list[dict]:
        """One prediction per task, in order (what ``/predict`` returns); see ``predict_tasks``."""
        return [r.prediction for r in self.predict_tasks(tasks, label_config)]

    def fetch_audio(self, task: dict, label_config: str) -> None:
        """Download the task's audio into MODEL_DIR/media without decoding it, so that a slow host holds only the
        thread fetching it; what goes wrong is reported by ``predict_tasks`` for the task later."""
        try:
            self._resolve(task, parse_config(label_config), media_source(self.settings))
        except Exception as exc:
            log.debug("task %s: prefetch failed: %s", task.get("id") if isinstance(task, dict) else None, exc)

    def predict_tasks(self, tasks: list[dict], label_config: str) -> list[TaskResult]:
        """One result per task, in order. Raises ``predictions.ConfigError`` for a label config without
        an Audio object; never raises for a bad task (it gets an empty prediction, a reason and a log line).

        The windows of all tasks go to the engine together; only when the decoded audio waiting for the engine
        passes MAX_PENDING_AUDIO_SECONDS (a large Data Manager selection) is the request split into groups."""
        started = time.perf_counter()
        targets = parse_config(label_config)
        allowed = tuple(targets.section_labels or SECTION_LABELS)
        source = media_source(self.settings)
        results: list[TaskResult | None] = [None] * len(tasks)
        pending: list[SongJob] = []
        first_job_by_key: dict[str, SongJob] = {}
        duplicates: list[tuple[int, SongJob]] = []
        waiting: list[tuple[int, object, str, Path]] = []  # songs another request is computing right now
        resolved = self._resolve_all(tasks, targets, source)
        for index, task in enumerate(tasks):
            task_id = task.get("id") if isinstance(task, dict) else None
            path = None
            try:
                if isinstance(resolved[index], Exception):
                    raise resolved[index]
                path, key = resolved[index]
                cached = self.cache.get(key)
                if cached is not None:
                    log.info("task %s: prediction cache hit", task_id)
                    results[index] = TaskResult(cached)
                    continue
                if key in first_job_by_key:  # the same song twice in one request: predict it once
                    duplicates.append((index, first_job_by_key[key]))
                    continue
                lock = SongLock.take(self._song_locks, key, wait=False)
                if lock is None:
                    waiting.append((index, task_id, key, path))
                    continue
                job = self._prepare_locked(index, task_id, key, path, allowed, lock)
                if isinstance(job, TaskResult):  # computed by another request between the lookup and the lock
                    results[index] = job
                    continue
            except TaskError as exc:
                self._forget_download(path)
                results[index] = self._failed(task_id, str(exc))
                continue
            except Exception as exc:  # a bug or an unexpected library error must not cost the other tasks
                log.exception("task %s: unexpected error", task_id)
                self._forget_download(path)
                results[index] = self._failed(task_id, f"{type(exc).__name__}: {exc}")
                continue
            first_job_by_key[key] = job
            pending.append(job)
            if sum(j.analysis.duration for j in pending) >= MAX_PENDING_AUDIO_SECONDS:
                self._complete_and_release(pending, allowed, targets, results)
                pending = []
        self._complete_and_release(pending, allowed, targets, results)
        # only now, holding no song lock of its own (no two requests can wait on each other), wait for the songs
        # that other requests were computing
        for index, task_id, key, path in waiting:
            results[index] = self._wait_for_song(index, task_id, key, path, allowed, targets, len(tasks))
        for index, job in duplicates:
            results[index] = results[job.index]
        self.stats.seconds += time.perf_counter() - started
        return [r if r is not None else TaskResult(empty_prediction(self._version), "no prediction was made")
                for r in results]

    @property
    def _song_locks(self) -> Path:
        return Path(self.settings.model_dir) / SONG_LOCKS

    def _resolve_all(self, tasks: list, targets: ConfigTargets, source) -> list:
        """Every task's (audio file, cache key), or the exception that stops it, downloading up to FETCH_PARALLEL
        files at once: one slow host delays only its own task (each download ends by FETCH_TIMEOUT)."""
        def one(task):
            try:
                return self._resolve(task, targets, source)
            except Exception as exc:  # re-raised in the request's loop, which reports it for this task
                return exc

        if len(tasks) <= 1:
            return [one(task) for task in tasks]
        with ThreadPoolExecutor(max_workers=min(FETCH_PARALLEL, len(tasks)),
                                thread_name_prefix="fetch") as pool:
            return list(pool.map(one, tasks))

    def _prepare_locked(self, index: int, task_id, key: str, path: Path, allowed, lock: SongLock):
        """``_prepare`` under the song's lock (kept by the job until its prediction is cached), or the cached
        prediction when another request finished the song while this one took the lock."""
        try:
            cached = self.cache.get(key, recheck=True)  # the task's first lookup was a miss: count it once
            if cached is not None:
                lock.release()
                return TaskResult(cached)
            job = self._prepare(index, task_id, key, path, allowed)
        except BaseException:
            lock.release()
            raise
        job.lock = lock
        return job

    def _wait_for_song(self, index: int, task_id, key: str, path: Path, allowed, targets: ConfigTargets,
                       count: int) -> TaskResult:
        """Wait until the request computing this song is done, then read its prediction from the cache; compute
        it here when that request failed (or left it uncached)."""
        lock = SongLock.take(self._song_locks, key, wait=True)
        log.info("task %s: the song was being predicted by another request; waited for it", task_id)
        try:
            job = self._prepare_locked(index, task_id, key, path, allowed, lock)
        except TaskError as exc:
            self._forget_download(path)
            return self._failed(task_id, str(exc))
        except Exception as exc:
            log.exception("task %s: unexpected error", task_id)
            return self._failed(task_id, f"{type(exc).__name__}: {exc}")
        if isinstance(job, TaskResult):
            return job
        results: list = [None] * count
        self._complete_and_release([job], allowed, targets, results)
        return results[index] or TaskResult(empty_prediction(self._version), "no prediction was made")

    def _complete_and_release(self, jobs: list[SongJob], allowed, targets: ConfigTargets, results: list) -> None:
        """``_complete``, then release the jobs' song locks (after their predictions are in the cache)."""
        try:
            self._complete(jobs, allowed, targets, results)
        finally:
            for job in jobs:
                if job.lock is not None:
                    job.lock.release()
                    job.lock = None

    def _complete(self, jobs: list[SongJob], allowed: tuple[str, ...], targets: ConfigTargets,
                  results: list) -> None:
        """Describe the windows of ``jobs`` in one engine call, then merge, caption, cache and store each song's
        prediction at its index in ``results``."""
        if not jobs:
            return
        engine = self._engine_or_none()
        descriptions = self._describe(engine, [r for job in jobs for r in job.requests])
        for job, transcript in zip(jobs, self.lyrics.transcribe([job.audio for job in jobs])):
            job.transcript = transcript
        offset = 0
        for job in jobs:
            count = len(job.requests)
            window_descriptions, offset = descriptions[offset:offset + count], offset + count
            # one description per region part, in the order of the windows' parts
            job_descriptions = [d for w, desc in zip(job.windows, window_descriptions)
                                for d in desc.for_parts(len(w.parts))]
            try:
                prediction = self._finish(engine, job, job_descriptions, allowed, targets)
            except Exception as exc:
                log.exception("task %s: could not assemble the prediction", job.task_id)
                results[job.index] = self._failed(job.task_id, f"{type(exc).__name__}: {exc}")
                continue
            degraded = (not all(d.ok for d in job_descriptions)
                        or (job.transcript is not None and not job.transcript.ok))
            if not degraded:  # a degraded song (model failure) is predicted again next time
                self.cache.put(job.key, prediction)
            results[job.index] = TaskResult(prediction)
            self.stats.predictions += 1
            job.requests, job.audio = [], None  # let the decoded audio go

    def _failed(self, task_id, cause: str) -> TaskResult:
        """Log why a task gets no prediction (naming the task once) and return its empty prediction with the
        reason."""
        cause = cause.removeprefix(f"task {task_id}: ")
        log.warning("task %s: no prediction: %s", task_id, cause)
        self.stats.failures += 1
        return TaskResult(empty_prediction(self._version), cause)

    def _forget_download(self, path: Path | None) -> None:
        """Delete a downloaded copy (MODEL_DIR/media) that could not be used: downloads are reused by reference,
        so without this a file fixed in Label Studio would never be fetched again. Local files are left alone."""
        if path is None:
            return
        try:
            if path.resolve().parent == (Path(self.settings.model_dir) / MEDIA_CACHE).resolve():
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete the unusable download %s: %s", path, exc)

    def _resolve(self, task: dict, targets: ConfigTargets, source) -> tuple[Path, str]:
        """The task's audio as a local file, and its prediction cache key."""
        from ls_acestep.media import MediaError, resolve_audio

        if not isinstance(task, dict):
            raise TaskError(f"the task is not a JSON object ({type(task).__name__})")
        ref = audio_reference(task, targets)
        if not ref:
            raise TaskError(f'task data has no audio under "{targets.audio_key}" (the <Audio> value in the '
                            'label config); import the task with that key')
        try:
            client = self._client_for(ref, source, task.get("id"))
            path = resolve_audio(ref, source, task_id=task.get("id"), client=client)
        except MediaError as exc:
            raise TaskError(str(exc)) from None
        try:
            digest = file_sha256(path)
        except OSError as exc:
            raise TaskError(f"audio {ref!r} cannot be read ({exc})") from None
        return path, cache_key(digest, self._version, targets.config_hash)

    def _client_for(self, ref: str, source, task_id):
        """The Label Studio client for downloading ``ref``, or None when it is not read from Label Studio. One
        client serves every task of this model (a personal access token is exchanged once, then refreshed only
        when the access token expires); it is made on the first task that needs it. Raises MediaError."""
        from ls_acestep.media import locate, make_client

        if not (source.ls_url and source.ls_token):
            return None
        location = locate(ref, source, task_id)
        if location.path is not None or urlsplit(location.url).netloc != urlsplit(source.ls_url).netloc:
            return None
        with self._ls_client_lock:
            if self._ls_client is None:
                self._ls_client = make_client(source.ls_url, source.ls_token, source.timeout)
            return self._ls_client

    def _prepare(self, index: int, task_id, key: str, path: Path, labels: tuple[str, ...]) -> SongJob:
        """Decode, analyse and cut one song into model windows."""
        from ml_backend.analysis.music import analyze
        from ml_backend.analysis.audio import MODEL_SR, AudioError, load_audio
        from ml_backend.describe.types import WindowRequest
        from ml_backend.describe.windows import plan_regions, plan_windows

        try:
            y = load_audio(path, sr=MODEL_SR, max_seconds=self.settings.max_audio_seconds)
        except AudioError as exc:
            raise TaskError(str(exc)) from None
        if y.size == 0:
            raise TaskError(f"audio {path.name!r} decodes to no samples; re-export the file")
        try:
            warm_analysis()  # waits for a warm-up in progress (see warm_analysis)
        except Exception:  # the analysis below shows the cause, for this song
            log.exception("analysis warm-up failed")
        analysis = analyze(y, MODEL_SR)
        regions = plan_regions(analysis, self.settings.segmentation, self.settings.segment_seconds,
                               self.settings.overlap_seconds)
        windows = plan_windows(regions, pack=self.settings.pack_windows)
        requests = [
            WindowRequest(audio=y[int(w.start * MODEL_SR):int(w.end * MODEL_SR)], start=w.start, end=w.end,
                          prompt=self.packed_prompt if len(w.parts) > 1 else self.prompt, labels=labels,
                          parts=tuple((p.start, p.end) for p in w.parts) if len(w.parts) > 1 else ())
            for w in windows
        ]
        kept = [(w, r) for w, r in zip(windows, requests) if r.audio.size > 0]
        return SongJob(index=index, task_id=task_id, key=key, analysis=analysis, regions=regions,
                       windows=[w for w, _ in kept], requests=[r for _, r in kept],
                       audio=y if self.lyrics.enabled else None)

    def _engine_or_none(self):
        """The engine, or None when it cannot be created (the cause is logged and shown by /health): songs then
        get the analysis' regions, labels and facts without model text."""
        try:
            return self.engine
        except Exception:
            log.exception("the %s engine cannot start; predicting from the analysis only", self.settings.engine)
            return None

    def _describe(self, engine, requests: list) -> list:
        """All windows of the request through the engine in one call; an engine that fails as a whole (or is
        missing) degrades every window's text (each gets a failed description), not the songs."""
        from ml_backend.describe.types import WindowDescription

        if not requests:
            return []
        self.stats.windows += len(requests)
        self.stats.engine_calls += 1
        if engine is None:
            return [WindowDescription.failed(f"no engine: {self.load_error}") for _ in requests]
        try:
            with self._run_lock:
                descriptions = list(engine.describe_windows(requests))
        except Exception as exc:
            log.exception("the engine failed on %d windows; regions keep their analysis labels only", len(requests))
            return [WindowDescription.failed(f"{type(exc).__name__}: {exc}") for _ in requests]
        if len(descriptions) != len(requests):
            log.error("the engine returned %d descriptions for %d windows; ignoring them",
                      len(descriptions), len(requests))
            return [WindowDescription.failed("description count mismatch") for _ in requests]
        failed = [d for d in descriptions if not d.ok]
        if failed:
            log.warning("%d of %d windows not described (first error: %s)", len(failed), len(requests),
                        failed[0].error)
        return descriptions

    def _finish(self, engine, job: SongJob, descriptions: list, allowed, targets: ConfigTargets) -> dict:
        """Merge one song's descriptions (one per part of its windows, in order) into regions, write its caption,
        build the prediction."""
        from ml_backend.analysis.music import letters_to_labels
        from ml_backend.describe.caption import song_caption

        plans = [RegionPlan(start=s.start, end=s.end, letter=s.letter, descriptions=[],
                            sure_label=getattr(s, "label", "")) for s in job.regions]
        parts = [part for window in job.windows for part in window.parts]
        for part, description in zip(parts, descriptions):
            if 0 <= part.region < len(plans):
                plans[part.region].descriptions.append(description)
        fallback_labels = (letters_to_labels(job.regions, list(allowed), region_vocals(plans))
                           if job.regions else [])
        with self._run_lock:  # song_caption falls back to a caption built from the windows; it never raises
            caption = song_caption(engine, descriptions, job.analysis)
        song = build_song(job.analysis, plans, fallback_labels, allowed, caption or "")
        self.lyrics.apply(song, job.transcript, plans)  # region lyrics, song lyrics, vocal language
        missing = [d for d in descriptions if not d.ok]
        if missing:  # reported, not filled in: the region keeps its analysis label and gets no model text
            log.warning("task %s: %d of %d region parts not described (first: %s)", job.task_id, len(missing),
                        len(descriptions), missing[0].error or "no reason given")
        log.info("task %s: %d regions from %d windows (%d of %d parts described)", job.task_id, len(song.regions),
                 len(job.windows), sum(1 for d in descriptions if d.ok), len(descriptions))
        return make_prediction(song, targets, song_score(descriptions, job.analysis), self._version)


_MODELS: dict = {}  # settings -> SongModel: the one loaded model of this process
_MODELS_LOCK = threading.Lock()


def get_model(settings) -> SongModel:
    """The process's SongModel for these settings (created once; the engine loads on first use)."""
    with _MODELS_LOCK:
        model = _MODELS.get(settings)
        if model is None:
            model = _MODELS[settings] = SongModel(settings)
        return model
