"""Benchmark of the music analysis (decode, resample, tempo, key, meter, structure) on ONE CPU core.

Renders songs of a few minutes from MIDI (tests/music.py, fluidsynth) and encodes them as WAV, FLAC, MP3, M4A and
Opus. Then, pinned to one core with every thread pool at one thread:
  - cold: a fresh process imports the backend and analyses one song (what the first request would cost without
    the start-up warm-up), and the same process's second song (warm);
  - ours, warm: load_audio (16 kHz for the model) + analyze for every file, after warm_up();
  - yardstick: the textbook librosa pipeline on the same files (librosa.load at 22.05 kHz, beat_track,
    chroma_cqt), measured in the same run;
  - with --baseline REV: the analysis as it was at git revision REV (its music.py loaded beside ours), on the
    same decoded audio in the same run, so a change to the analysis is measured as a ratio, not across runs.
Prints, per file, seconds of audio, decode and analysis seconds, the real-time factor (audio seconds per
second of work) and the ratio of the yardstick's time to ours.

    python bench/bench_analysis.py [--minutes 3] [--songs 3] [--cpu 0] [--keep DIR] [--baseline REV]
"""

from __future__ import annotations

import os

# One thread everywhere, before numpy/numba/librosa are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = (".wav", ".flac", ".mp3", ".m4a", ".opus")

_COLD = """
import json, os, sys, time
t0 = time.perf_counter()
from ml_backend.analysis.audio import load_audio
from ml_backend.analysis.music import analyze
t1 = time.perf_counter()
y = load_audio(sys.argv[1]); analyze(y, 16000)
t2 = time.perf_counter()
y = load_audio(sys.argv[2]); analyze(y, 16000)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "second": t3 - t2}))
"""


def bench_specs(minutes: float, songs: int):
    """`songs` songs of about `minutes` each: varied tempo, key, meter and form, 8-bar sections."""
    from tests.music import song

    plans = [(100, "E minor", 4), (128, "Bb major", 4), (84, "D major", 3), (150, "F# minor", 4)]
    specs = []
    for i in range(songs):
        tempo, key, meter = plans[i % len(plans)]
        bar = meter * 60.0 / tempo
        form = "DABABCAB" + "CAB" * 20
        parts = max(3, round(minutes * 60 / (8 * bar)))
        specs.append(song(tempo, key, form[:parts], bars=8, meter=meter, seed=100 + i))
    return specs


def pin(cpu: int) -> str:
    """Pin this process (and its children, e.g. ffmpeg) to one CPU; returns a description."""
    try:
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"


def ours(path: Path) -> tuple[float, float, float]:
    """(audio seconds, decode seconds, analysis seconds) of our pipeline on one file."""
    from ml_backend.analysis.music import analyze
    from ml_backend.analysis.audio import MODEL_SR, load_audio

    t0 = time.perf_counter()
    y = load_audio(path, sr=MODEL_SR)
    t1 = time.perf_counter()
    analyze(y, MODEL_SR)
    t2 = time.perf_counter()
    return len(y) / MODEL_SR, t1 - t0, t2 - t1


def load_baseline(rev: str):
    """The `analyze` function of ml_backend/analysis/music.py at git revision `rev` (a self-contained module
    then), loaded under another name."""
    import importlib.util

    source = subprocess.run(["git", "show", f"{rev}:ml_backend/analysis/music.py"], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "baseline_music.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_music", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_music"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    module.warm_up()
    return module.analyze


def baseline_seconds(analyze_old, path: Path) -> float:
    """Seconds the baseline analysis takes on the same decoded audio as ours."""
    from ml_backend.analysis.audio import MODEL_SR, load_audio

    y = load_audio(path, sr=MODEL_SR)
    t0 = time.perf_counter()
    analyze_old(y, MODEL_SR)
    return time.perf_counter() - t0


def yardstick(path: Path) -> float:
    """Seconds for the textbook librosa pipeline: load at 22.05 kHz, beat tracking, CQT chroma."""
    import librosa

    t0 = time.perf_counter()
    with warnings.catch_warnings():  # librosa warns when it falls back to audioread for MP3/M4A
        warnings.simplefilter("ignore")
        y, sr = librosa.load(str(path), sr=22050, mono=True)
    librosa.beat.beat_track(y=y, sr=sr)
    librosa.feature.chroma_cqt(y=y, sr=sr)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each song (default 3)")
    parser.add_argument("--songs", type=int, default=3, help="number of songs (default 3)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last one allowed)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the renders (kept and reused)")
    parser.add_argument("--no-yardstick", action="store_true", help="skip the librosa yardstick")
    parser.add_argument("--baseline", default=None, help="git revision whose analysis to time beside ours")
    args = parser.parse_args()

    from tests.music import encode, render_song

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    pinned = pin(cpu)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for i, spec in enumerate(bench_specs(args.minutes, args.songs)):
        wav = render_song(folder / f"song{i}.wav", spec)
        for suffix in FORMATS:
            target = wav.with_suffix(suffix)
            if suffix != ".wav" and (not target.exists() or target.stat().st_mtime < wav.stat().st_mtime):
                encode(wav, target)
            files.append(target)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cold = json.loads(subprocess.run([sys.executable, "-c", _COLD, str(files[0]), str(files[len(FORMATS)])],
                                     capture_output=True, text=True, check=True, env=env, cwd=ROOT
                                     ).stdout.strip().splitlines()[-1])

    from ml_backend.analysis.music import warm_up

    t0 = time.perf_counter()
    warm_up()
    warm_up_s = time.perf_counter() - t0

    print(f"# Analysis benchmark: one core ({pinned}), {len(files)} files, {args.songs} songs of "
          f"~{args.minutes:g} min")
    print(f"cold process: import {cold['import']:.2f} s, first song {cold['first']:.2f} s "
          f"(JIT compiles), second song {cold['second']:.2f} s; warm_up() in this process {warm_up_s:.2f} s\n")
    analyze_old = load_baseline(args.baseline) if args.baseline else None
    print("| file | audio s | decode s | analysis s | real-time factor | analysis alone | baseline analysis s "
          "| yardstick s | yardstick / ours |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    total_audio = total_ours = total_yard = total_analysis = total_old = 0.0
    for path in files:
        seconds, decode_s, analysis_s = ours(path)
        work = decode_s + analysis_s
        yard = yardstick(path) if not args.no_yardstick else float("nan")
        old = baseline_seconds(analyze_old, path) if analyze_old else float("nan")
        total_audio += seconds
        total_ours += work
        total_yard += yard
        total_analysis += analysis_s
        total_old += old
        print(f"| {path.name} | {seconds:.0f} | {decode_s:.2f} | {analysis_s:.2f} | {seconds / work:.0f}x | "
              f"{seconds / analysis_s:.0f}x | {old:.2f} | {yard:.2f} | {yard / work:.1f}x |")
    print(f"| **all** | {total_audio:.0f} | | {total_analysis:.1f} | **{total_audio / total_ours:.0f}x** | "
          f"**{total_audio / total_analysis:.0f}x** | {total_old:.1f} | {total_yard:.1f} | "
          f"{total_yard / total_ours:.1f}x |")
    if analyze_old:
        print(f"\nanalysis alone: {total_analysis:.2f} s now, {total_old:.2f} s at {args.baseline} "
              f"({total_analysis / total_old:.2f}x the baseline's time)")


if __name__ == "__main__":
    main()
