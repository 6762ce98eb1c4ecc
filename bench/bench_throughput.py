"""Throughput per song: the backend's defaults against the original captioning pipeline's way of working, on the
same real songs, in the same run.

Modes (each runs in its own process, so its peak memory is its own; rounds interleave the modes so that the load
of a shared machine spreads over all of them; medians are reported):

- ``original``: fixed 30 s windows with 2 s overlap, one window per generate() call, the single-window prompt;
  no music analysis (the original pipeline had none).
- ``defaults``: the backend as shipped: structure regions packed into windows of at most 30 s, BATCH_SIZE windows
  per call, each prefilled alone and decoded together.
- ``cross-song``: the defaults with all songs' windows in one engine call, as the queue worker and
  ``preannotate`` hand them over when several songs wait for the model (``worker.SongBatcher``).
- ``defaults-b1``: the same windows, one per call.
- ``padded-prefill``: the defaults with one left-padded prefill per batch (how batches ran before).
- ``unpacked``: one structure region per window (how the backend cut songs before packing), batched.

Every mode uses the REAL ``TransformersEngine`` with the tiny random Qwen2-Audio (tests/tiny_model.py) and a fixed
output length (min_new_tokens = max_new_tokens), so the work per window is the same in every mode. Reported per
mode: windows per minute of audio, engine seconds per song (wall clock, and the CPU seconds of its one torch thread,
which other load on a shared machine barely changes), pipeline seconds per song (decode + analysis + windows +
engine), and the process's peak resident memory.

    python bench/bench_throughput.py                          # 3 wesnoth songs (apt-get install wesnoth-1.16-music)
    python bench/bench_throughput.py --songs a.ogg b.mp3 --rounds 5 --new-tokens 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ls_acestep.files import atomic_write  # noqa: E402 (the repository is on sys.path now)

WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
DEFAULT_SONGS = ("battle.ogg", "heroes_rite.ogg", "northerners.ogg")  # 744 s of orchestral game music
MODES = ("original", "defaults", "cross-song", "defaults-b1", "padded-prefill", "unpacked")
SR = 16000  # Hz


def default_songs(folder: Path) -> list[Path]:
    """The wesnoth songs when the Debian package is installed, else three songs rendered from MIDI."""
    if all((WESNOTH / name).is_file() for name in DEFAULT_SONGS):
        return [WESNOTH / name for name in DEFAULT_SONGS]
    from tests.music import render_songs, song

    specs = [song(100, "A minor", "ABABCB", bars=8), song(128, "E major", "DABAB", bars=8, seed=1),
             song(84, "D minor", "ABACAB", bars=6, meter=3, seed=2)]
    return render_songs(folder, specs)


def plan(mode: str, y):
    """(window requests, seconds spent on the analysis) for one decoded song in ``mode``."""
    from ml_backend.analysis.music import MusicAnalysis, analyze
    from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT, DEFAULT_PACKED_PROMPT
    from ml_backend.describe.types import WindowRequest
    from ml_backend.describe.windows import plan_regions, plan_windows

    started = time.perf_counter()
    duration = len(y) / SR
    if mode == "original":
        analysis = MusicAnalysis(duration=duration, bpm=None, beats=[], keyscale=None, key_confidence=0.0,
                                 timesignature="4", timesignature_confident=False, sections=[])
        windows = plan_windows(plan_regions(analysis, "fixed", 30.0, 2.0), pack=False)
    else:
        analysis = analyze(y, SR)
        windows = plan_windows(plan_regions(analysis, "structure"), pack=mode != "unpacked")
    analysis_s = time.perf_counter() - started
    requests = []
    for w in windows:
        packed = len(w.parts) > 1
        requests.append(WindowRequest(audio=y[int(w.start * SR):int(w.end * SR)], start=w.start, end=w.end,
                                      prompt=DEFAULT_PACKED_PROMPT if packed else DEFAULT_ANALYSIS_PROMPT,
                                      parts=tuple((p.start, p.end) for p in w.parts) if packed else ()))
    return requests, analysis_s


def run_mode(mode: str, songs: list[Path], model_dir: str, batch_size: int, new_tokens: int, threads: int) -> dict:
    """One mode over all songs in this process; the figures of one round."""
    import torch

    from ml_backend.analysis.audio import load_audio
    from ml_backend.describe.engines.transformers_engine import TransformersEngine

    torch.set_num_threads(threads)
    n_songs = len(songs)
    size = 1 if mode in ("original", "defaults-b1") else batch_size
    engine = TransformersEngine(model_dir, device="cpu", batch_size=size, max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens)
    engine.prefill_apart = mode != "padded-prefill"
    warm = load_audio(songs[0], sr=SR)[:SR * 4]
    from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT
    from ml_backend.describe.types import WindowRequest

    engine.describe_windows([WindowRequest(audio=warm, start=0.0, end=4.0, prompt=DEFAULT_ANALYSIS_PROMPT)] * 2)
    from ml_backend.analysis.music import warm_up

    warm_up()  # the analysis' JIT compilation happens once per server process, before the first request
    windows = engine_s = engine_cpu_s = pipeline_s = audio_s = 0.0
    started_all = time.perf_counter()
    if mode == "cross-song":  # every song decoded and planned, then one engine call for all of them
        started = time.perf_counter()
        requests = []
        for path in songs:
            y = load_audio(path, sr=SR)
            requests += plan(mode, y)[0]
            audio_s += len(y) / SR
        t, cpu = time.perf_counter(), time.process_time()
        engine.describe_windows(requests)
        engine_s, engine_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        pipeline_s = time.perf_counter() - started
        windows = len(requests)
        songs = []
    for path in songs:
        started = time.perf_counter()
        y = load_audio(path, sr=SR)
        requests, _ = plan(mode, y)
        t, cpu = time.perf_counter(), time.process_time()
        engine.describe_windows(requests)
        engine_s += time.perf_counter() - t
        engine_cpu_s += time.process_time() - cpu
        pipeline_s += time.perf_counter() - started
        windows += len(requests)
        audio_s += len(y) / SR
        del y, requests
    return {"mode": mode, "songs": n_songs, "audio_seconds": round(audio_s, 1), "windows": int(windows),
            "engine_s": engine_s, "engine_cpu_s": engine_cpu_s, "pipeline_s": pipeline_s, "wall_s": time.perf_counter() - started_all,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", nargs="*", type=Path, help="audio files (default: 3 wesnoth songs)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per mode process")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_mode(args.worker, args.songs, args.model_dir, args.batch_size, args.new_tokens, args.threads)
        print(json.dumps(result))
        return result

    from tests.tiny_model import build_tiny_qwen2_audio

    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    songs = args.songs or default_songs(work / "songs")
    model_dir = str(build_tiny_qwen2_audio(work / "tiny"))
    rounds: dict[str, list[dict]] = {m: [] for m in args.modes}
    for r in range(args.rounds):
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--worker", mode, "--model-dir", model_dir, "--batch-size",
                   str(args.batch_size), "--new-tokens", str(args.new_tokens), "--threads", str(args.threads),
                   "--songs", *map(str, songs)]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if done.returncode != 0:
                raise SystemExit(f"mode {mode} failed:\n{done.stderr[-3000:]}")
            rounds[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {mode}: engine {rounds[mode][-1]['engine_s']:.1f} s", file=sys.stderr)

    minutes = rounds[args.modes[0]][0]["audio_seconds"] / 60
    table = {}
    for mode, results in rounds.items():
        n = results[0]["songs"]
        table[mode] = {
            "windows": results[0]["windows"],
            "windows_per_minute": round(results[0]["windows"] / minutes, 2),
            "engine_s_per_song": round(statistics.median(x["engine_s"] for x in results) / n, 2),
            # CPU seconds of the one torch thread: what the work costs, whatever else loads the machine
            "engine_cpu_s_per_song": round(statistics.median(x["engine_cpu_s"] for x in results) / n, 2),
            "pipeline_s_per_song": round(statistics.median(x["pipeline_s"] for x in results) / n, 2),
            "peak_rss_mb": round(statistics.median(x["peak_rss_mb"] for x in results)),
            "engine_s_runs": [round(x["engine_s"], 2) for x in results],
        }
    base = table.get("original")
    for row in table.values():
        if base:
            row["engine_vs_original"] = round(row["engine_s_per_song"] / base["engine_s_per_song"], 2)
            row["engine_cpu_vs_original"] = round(row["engine_cpu_s_per_song"] / base["engine_cpu_s_per_song"], 2)
    report = {"songs": [p.name for p in songs], "audio_seconds": round(minutes * 60, 1), "rounds": args.rounds,
              "batch_size": args.batch_size, "new_tokens": args.new_tokens, "threads": args.threads,
              "cpus": os.cpu_count(), "load_average": [round(x, 1) for x in os.getloadavg()], "modes": table}
    print(f"{len(songs)} songs, {report['audio_seconds']} s; tiny random Qwen2-Audio, {args.new_tokens} new tokens, "
          f"{args.threads} thread(s), medians of {args.rounds} interleaved rounds; load {report['load_average']}")
    print("| mode | windows/min | engine s/song | vs original | engine CPU s/song | vs original | pipeline s/song "
          "| peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, row in table.items():
        print(f"| {mode} | {row['windows_per_minute']} | {row['engine_s_per_song']} | "
              f"{row.get('engine_vs_original', '')} | {row['engine_cpu_s_per_song']} | "
              f"{row.get('engine_cpu_vs_original', '')} | {row['pipeline_s_per_song']} | {row['peak_rss_mb']} |")
    if args.json:
        atomic_write(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return report


if __name__ == "__main__":
    main()
