"""The GPU run in one command: the backend's description engine, at the real model size, on real music.

Two steps, because the GPU machine has nothing but PyTorch and transformers (no librosa, no audio files):

1. here (``prepare``): decode a few minutes of real music to 16 kHz, run the backend's analysis and window plan
   (structure regions packed into windows of at most 30 s, as the defaults do) and write a bundle folder:
   ``plan.json`` and one int16 ``.npy`` per song (about 2 MB a minute);

       python bench/gpu_run.py prepare                 # 2 wesnoth songs (7 min) into .gpu_bundle/

2. on the GPU machine (``run``, started by ``bench/gpu_run.sh``): build a randomly initialised Qwen2-Audio-7B in
   bf16 (the real architecture, no download), describe every song's windows with the REAL ``TransformersEngine``
   at BATCH_SIZE 1, 4 and 8 with a fixed output length, and print per-song seconds, generated tokens per second
   and peak GPU memory; then the lyrics model (whisper-large-v3-turbo's architecture, random weights) through
   bench/bench_lyrics.py when ml_backend/lyrics is there (skipped with a message otherwise). Stops starting new
   measurements when ``--budget-s`` is spent, so the whole run ends within 8 minutes.

       bash bench/gpu_run.sh                           # on the GPU machine, with .gpu_bundle carried along
       python bench/gpu_run.py run --tiny              # the same path on the CPU with the tiny model (tests)
       python bench/gpu_run.py run --dry-run           # the full-size model on the meta device: its size only

The tiny byte-level tokenizer spends one token per character, about four times what Qwen's tokenizer spends, so
each prompt is cut to a quarter of its characters (``--prompt-scale``) to give the prefill the real length. The
text the random model writes is meaningless; only time and memory are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 16000  # Hz
WESNOTH = Path("/usr/share/games/wesnoth/1.16/data/core/music")
DEFAULT_SONGS = ("heroes_rite.ogg", "northerners.ogg")  # 426 s of orchestral game music (GPL, Debian)
DEFAULT_BUNDLE = ROOT / ".gpu_bundle"
BATCH_SIZES = (1, 4, 8)
PROMPT_SCALE = 0.25  # characters of the byte tokenizer per token of Qwen's BPE tokenizer, about
TINY_ID = "tiny-random-Qwen2-Audio"


# ------------------------------------------------------------------------------------------------ prepare

def prepare(songs: list[Path], bundle: Path) -> dict:
    """Decode, analyse and plan ``songs`` as the backend does by default and write the bundle; returns the plan."""
    from ml_backend.analysis.audio import load_audio
    from ml_backend.analysis.music import analyze
    from ml_backend.describe.windows import plan_regions, plan_windows

    bundle.mkdir(parents=True, exist_ok=True)
    plan = {"songs": []}
    for index, path in enumerate(songs):
        y = load_audio(path, sr=SR)
        windows = plan_windows(plan_regions(analyze(y, SR), "structure"))
        name = f"song{index}.npy"
        np.save(bundle / name, (np.clip(y, -1, 1) * 32767).astype(np.int16))
        plan["songs"].append({"name": path.name, "audio": name, "seconds": round(len(y) / SR, 2),
                              "windows": [{"start": w.start, "end": w.end,
                                           "parts": [[p.start, p.end] for p in w.parts]} for w in windows]})
    (bundle / "plan.json").write_text(json.dumps(plan, indent=1))
    return plan


def load_requests(bundle: Path, prompt_scale: float) -> list[tuple[str, float, list]]:
    """(song name, song seconds, window requests) per song of the bundle, with the backend's prompts filled in
    and cut to ``prompt_scale`` of their characters."""
    from ml_backend.describe.prompt import DEFAULT_ANALYSIS_PROMPT, DEFAULT_PACKED_PROMPT, fill_prompt
    from ml_backend.describe.types import WindowRequest

    plan = json.loads((bundle / "plan.json").read_text())
    out = []
    for song in plan["songs"]:
        y = np.load(bundle / song["audio"]).astype(np.float32) / 32767.0
        requests = []
        for w in song["windows"]:
            parts = tuple(tuple(p) for p in w["parts"]) if len(w["parts"]) > 1 else ()
            text = fill_prompt(DEFAULT_PACKED_PROMPT if parts else DEFAULT_ANALYSIS_PROMPT, w["start"], w["end"], parts)
            text = text[:max(1, int(len(text) * prompt_scale))]
            requests.append(WindowRequest(audio=y[int(w["start"] * SR):int(w["end"] * SR)], start=w["start"],
                                          end=w["end"], prompt=text, parts=parts))
        out.append((song["name"], song["seconds"], requests))
    return out


# ------------------------------------------------------------------------------------------------ run

def build_engine(tiny: bool, device: str, new_tokens: int, work: Path):
    """The REAL TransformersEngine over a random model: tiny (CPU tests) or Qwen2-Audio-7B's architecture."""
    from ml_backend.describe.engines.transformers_engine import TransformersEngine, register_model

    if tiny:
        from tests.tiny_model import build_tiny_qwen2_audio

        model_id = str(build_tiny_qwen2_audio(work / "tiny"))
    else:
        from bench.bench_batching import FULL_SIZE_ID, build_full_size

        model, processor = build_full_size(device)
        register_model(FULL_SIZE_ID, device, model, processor, family="qwen2_audio")
        model_id = FULL_SIZE_ID
    return TransformersEngine(model_id, device=device, batch_size=1, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens)


def describe_songs(engine, songs, batch_size: int, new_tokens: int) -> dict:
    """Every song's windows through the engine at ``batch_size``: per-song seconds, tokens per second and the
    peak GPU memory of this batch size."""
    import torch

    cuda = engine.loaded.device.startswith("cuda")
    engine.batch_size = batch_size
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rows, total_s, total_windows = [], 0.0, 0
    for name, seconds, requests in songs:
        started = time.perf_counter()
        descriptions = engine.describe_windows(requests)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        failed = [d.error for d in descriptions if not d.ok and "neither JSON" not in d.error
                  and "not described" not in d.error and "could not parse" not in d.error]
        if failed:
            raise SystemExit(f"generation failed at batch size {batch_size}: {failed[0]}")
        total_s += elapsed
        total_windows += len(requests)
        rows.append({"song": name, "song_seconds": seconds, "windows": len(requests), "seconds": round(elapsed, 2),
                     "tokens_per_s": round(len(requests) * new_tokens / elapsed, 1)})
    return {"batch_size": batch_size, "songs": rows, "seconds": round(total_s, 2),
            "seconds_per_song": round(total_s / len(songs), 2),
            "tokens_per_s": round(total_windows * new_tokens / total_s, 1),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}


def run_lyrics(out: Path, tiny: bool, seconds_left: float) -> dict:
    """The lyrics model through bench/bench_lyrics.py in its own process; a message when it cannot run."""
    if not (ROOT / "ml_backend" / "lyrics").is_dir() or not (ROOT / "bench" / "bench_lyrics.py").is_file():
        return {"skipped": "ml_backend/lyrics is not in this tree yet: no lyrics model to measure"}
    if seconds_left < 60:
        return {"skipped": f"only {seconds_left:.0f} s of the time budget left"}
    cmd = [sys.executable, str(ROOT / "bench" / "bench_lyrics.py"), "--repeats", "1", "--json", str(out)]
    cmd += ["--minutes", "0.5", "--tokens", "8"] if tiny else ["--full-size", "--minutes", "3"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, seconds_left - 10), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"skipped": f"bench_lyrics did not finish in the {seconds_left:.0f} s left"}
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"skipped": "bench_lyrics failed: " + " | ".join(tail)}
    return json.loads(out.read_text())


def dry_run() -> dict:
    """Build the full-size model on the meta device (no memory) and report its size."""
    from bench.bench_batching import build_full_size

    model, _ = build_full_size("meta")
    params = sum(p.numel() for p in model.parameters())
    return {"model": "Qwen2-Audio-7B architecture", "parameters_billion": round(params / 1e9, 2),
            "bf16_gib": round(params * 2 / 2**30, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare", help="decode, analyse and plan real songs into a bundle (here)")
    prep.add_argument("--songs", nargs="*", type=Path, help="audio files (default: two wesnoth songs)")
    prep.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    go = sub.add_parser("run", help="describe the bundle's songs at batch sizes 1, 4, 8 (GPU machine)")
    go.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    go.add_argument("--tiny", action="store_true", help="tiny random model on the CPU (what the tests run)")
    go.add_argument("--dry-run", action="store_true", help="full-size model on the meta device: its size only")
    go.add_argument("--device", default="auto")
    go.add_argument("--batch-sizes", type=int, nargs="*", default=list(BATCH_SIZES))
    go.add_argument("--new-tokens", type=int, default=None, help="fixed output length (default 256; tiny 4)")
    go.add_argument("--prompt-scale", type=float, default=PROMPT_SCALE)
    go.add_argument("--budget-s", type=float, default=420.0, help="start nothing new after this many seconds")
    go.add_argument("--no-lyrics", action="store_true")
    go.add_argument("--out", type=Path, default=None, help="folder for the JSON figures (default $OUT or .)")
    args = parser.parse_args(argv)

    if args.step == "prepare":
        if args.songs:
            songs = args.songs
        elif all((WESNOTH / s).is_file() for s in DEFAULT_SONGS):
            songs = [WESNOTH / s for s in DEFAULT_SONGS]
        else:
            raise SystemExit("no songs: apt-get install wesnoth-1.16-music, or pass --songs a.ogg b.mp3")
        plan = prepare(songs, args.bundle)
        windows = sum(len(s["windows"]) for s in plan["songs"])
        minutes = sum(s["seconds"] for s in plan["songs"]) / 60
        print(f"{args.bundle}: {len(plan['songs'])} songs, {minutes:.1f} min, {windows} windows "
              f"({windows / minutes:.2f} per minute)")
        return plan
    if args.dry_run:
        report = dry_run()
        print(json.dumps(report, indent=2))
        return report

    import torch

    from ml_backend.describe.engines.transformers_engine import resolve_device

    started = time.perf_counter()
    out = args.out or Path(os.environ.get("OUT") or ".")
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.tiny else resolve_device(args.device)
    if not args.tiny and not device.startswith("cuda"):
        raise SystemExit("no GPU visible: run with --tiny (CPU, tiny model) or --dry-run (size only)")
    if not (args.bundle / "plan.json").is_file():
        raise SystemExit(f"{args.bundle}/plan.json is missing: run `python bench/gpu_run.py prepare` first and "
                         "carry the bundle folder along")
    new_tokens = args.new_tokens or (4 if args.tiny else 256)
    songs = load_requests(args.bundle, 1.0 if args.tiny else args.prompt_scale)
    engine = build_engine(args.tiny, device, new_tokens, out)
    build_s = time.perf_counter() - started
    engine.batch_size = 2
    engine.describe_windows(songs[0][2][:2])  # warm-up: kernels, allocator
    report = {"device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
              "model": "tiny random Qwen2-Audio" if args.tiny else "Qwen2-Audio-7B architecture, random bf16",
              "transformers": __import__("transformers").__version__, "torch": torch.__version__,
              "new_tokens": new_tokens, "prompt_scale": args.prompt_scale if not args.tiny else 1.0,
              "build_s": round(build_s, 1), "songs": [{"song": n, "seconds": s, "windows": len(r)} for n, s, r in songs],
              "batch_sizes": [], "skipped": []}
    print(f"{report['model']} on {report['device']}, built in {build_s:.0f} s; {new_tokens} new tokens per window",
          flush=True)
    for size in args.batch_sizes:
        if time.perf_counter() - started > args.budget_s:
            report["skipped"].append(f"BATCH_SIZE={size}: time budget spent")
            continue
        row = describe_songs(engine, songs, size, new_tokens)
        report["batch_sizes"].append(row)
        print(f"BATCH_SIZE={size}: {row['seconds_per_song']} s per song, {row['tokens_per_s']} tokens/s, "
              f"peak GPU {row['peak_gpu_gib']} GiB; " +
              ", ".join(f"{r['song']} {r['seconds']} s ({r['windows']} windows)" for r in row["songs"]), flush=True)
    del engine
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    if args.no_lyrics:
        report["lyrics"] = {"skipped": "--no-lyrics"}
    else:
        report["lyrics"] = run_lyrics(out / "gpu_lyrics.json", args.tiny,
                                      args.budget_s + 60 - (time.perf_counter() - started))
    print("lyrics: " + json.dumps(report["lyrics"])[:600], flush=True)
    report["total_s"] = round(time.perf_counter() - started, 1)
    (out / "gpu_run.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"done in {report['total_s']} s; figures in {out / 'gpu_run.json'}")
    return report


if __name__ == "__main__":
    main()
