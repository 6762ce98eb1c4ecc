"""Benchmark of `ls-acestep report` on a large dataset folder.

Synthesises a folder of N songs (default 5,000) as `ls-acestep convert` writes them: `<stem>.wav` (distinct
tonal clips: chords of random pitches with a pulse, `--seconds` long, mono 22.05 kHz so that 5,000 of them fit on
disk), `<stem>.json` with an 8-region timeline and `<stem>.txt` lyrics for half of them. Then, each in a fresh
subprocess so peak memory (ru_maxrss of the largest process) is that run's alone:
  - `report --no-audio`: reading, validate, distributions, 5,000 timelines, the HTML;
  - yardstick: `ls-acestep validate` on the same folder (the reading the report cannot avoid);
  - `report` with audio (loudness, true peak, clipping, fingerprints, near-duplicates), `--jobs` processes;
  - floor: decoding every file with soundfile and nothing else, in as many processes.
Full-length songs cost more per song than the short clips: the audio pass is also timed on `--long` songs of
`--long-seconds` (stereo 44.1 kHz), giving seconds of work per minute of audio, to extrapolate to real songs.

    python bench/bench_report.py [--songs 5000] [--seconds 8] [--jobs 2] [--long 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ("Intro", "Verse", "Pre-Chorus", "Chorus", "Verse", "Chorus", "Bridge", "Outro")
KEYS = ("C major", "A minor", "G major", "E minor", "F major", "D minor", "Bb major", "F# minor")


def clip(seed: int, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A distinct tonal clip: one random triad per second over a kick-like pulse, at a random level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    notes = np.empty_like(t)  # one MIDI pitch per sample per voice, changing every second
    chords = []
    for step in (0, None, 7):
        roots = 48 + rng.integers(0, 24, size=int(np.ceil(seconds)))
        chords.append(roots[(t // 1).astype(int)])
    thirds = np.where(rng.random(int(np.ceil(seconds))) < 0.5, 4, 3)[(t // 1).astype(int)]
    out = np.zeros_like(t)
    for voice, offset in zip(chords, (0, thirds, 7)):
        notes[:] = voice + offset
        out += np.sin(2 * np.pi * 440 * 2 ** ((notes - 69) / 12) * t)
    out += 0.8 * np.sin(2 * np.pi * 55 * t) * np.exp(-8 * (t % 0.5))
    out *= 10 ** (rng.uniform(-20, -3) / 20) / np.max(np.abs(out))
    data = np.repeat(out[:, None], channels, axis=1)
    return data.astype(np.float32)


def sidecar(index: int, seconds: float) -> dict:
    step = seconds / len(LABELS)
    vocal = index % 2 == 0
    return {
        "caption": f"Song {index}: an upbeat pop track with piano, bass and drums.",
        "bpm": 80 + index % 90, "keyscale": KEYS[index % len(KEYS)], "timesignature": "3" if index % 7 == 0 else "4",
        "language": "en" if vocal else "instrumental", "duration": round(seconds, 3), "genre": "pop, dance",
        "is_instrumental": not vocal,
        "music_analysis": {"timeline": [
            {"start_sec": round(n * step, 3), "end_sec": round((n + 1) * step, 3), "section_label": label,
             "notes": f"{label.lower()} with piano, bass and drums; bar {n * 8}", "lyrics": ""}
            for n, label in enumerate(LABELS)]},
    }


def make_folder(folder: Path, songs: int, seconds: float) -> None:
    import soundfile as sf

    dataset = folder / "dataset"
    dataset.mkdir(parents=True)
    for i in range(songs):
        stem = dataset / f"song-{i:05d}"
        sf.write(f"{stem}.wav", clip(i, seconds, 22050), 22050, subtype="PCM_16")
        stem.with_suffix(".json").write_text(json.dumps(sidecar(i, seconds)))
        if i % 2 == 0:
            stem.with_suffix(".txt").write_text("[Verse]\nline one\nline two\n")


def make_long(folder: Path, songs: int, seconds: float) -> None:
    import soundfile as sf

    folder.mkdir(parents=True)
    for i in range(songs):
        sf.write(folder / f"long-{i}.wav", clip(10_000 + i, seconds, 44100, channels=2), 44100, subtype="PCM_16")
        (folder / f"long-{i}.json").write_text(json.dumps(sidecar(i, seconds)))


DECODE_ONLY = """
import sys, soundfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
def read(p):
    return soundfile.read(p, dtype="float32", always_2d=True)[0].shape[0]
if __name__ == "__main__":
    files = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.wav"))
    with ProcessPoolExecutor(int(sys.argv[2])) as pool:
        print(sum(pool.map(read, files, chunksize=8)))
"""


MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, flush=True)
sys.stderr.write(done.stderr[-2000:])
"""


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the process tree, peak MB of its largest process) of one command, run under
    a fresh wrapper process so that the figures are this command's alone."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    code, cpu, peak_kb = done.stdout.split()
    if int(code) not in (0, 1):  # 1: validate found problems, which is fine here
        raise SystemExit(f"{' '.join(cmd)} failed ({code}): {done.stderr}")
    return wall, float(cpu), int(peak_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each clip in the big folder")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--long", type=int, default=4, help="full-length songs for the per-minute figure")
    parser.add_argument("--long-seconds", type=float, default=180.0)
    parser.add_argument("--keep", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    cli = [sys.executable, "-m", "ls_acestep.cli"]
    try:
        folder, long_folder = work / "big", work / "long"
        if not folder.is_dir():
            start = time.perf_counter()
            make_folder(folder, args.songs, args.seconds)
            print(f"made {args.songs} songs of {args.seconds:g} s in {time.perf_counter() - start:.0f} s")
        if args.long and not long_folder.is_dir():
            make_long(long_folder, args.long, args.long_seconds)
            (work / "long1").mkdir()  # one of them alone: its run is the fixed cost (start-up, imports, page)
            for name in ("long-0.wav", "long-0.json"):
                (work / "long1" / name).hardlink_to(long_folder / name)
        decode = work / "decode_only.py"
        decode.write_text(DECODE_ONLY)
        rows = [
            (f"validate ({args.songs} songs), yardstick", timed([*cli, "validate", str(folder), "--quiet"])),
            ("report --no-audio", timed([*cli, "report", str(folder), "--no-audio", "--out", str(work / "r0")])),
            (f"floor: decode only, {args.jobs} processes", timed([sys.executable, str(decode), str(folder),
                                                                  str(args.jobs)])),
            (f"report with audio, --jobs {args.jobs}", timed([*cli, "report", str(folder), "--jobs", str(args.jobs),
                                                              "--out", str(work / "r1")])),
        ]
        if args.long:
            rows.append((f"report with audio: 1 song of {args.long_seconds:g} s stereo 44.1 kHz, --jobs 1",
                         timed([*cli, "report", str(work / "long1"), "--jobs", "1", "--out", str(work / "r3")])))
            rows.append((f"report with audio: {args.long} songs of {args.long_seconds:g} s stereo 44.1 kHz, --jobs 1",
                         timed([*cli, "report", str(long_folder), "--jobs", "1", "--out", str(work / "r2")])))
        print(f"\n| {'run':<70} | wall s | CPU s | peak MB |\n|{'-' * 72}|--------|-------|---------|")
        for name, (wall, cpu, peak) in rows:
            print(f"| {name:<70} | {wall:6.1f} | {cpu:5.1f} | {peak:7.0f} |")
        validate, no_audio, floor, audio = (r[1][0] for r in rows[:4])
        html = (work / "r1" / "report.html").stat().st_size / 1e6
        print(f"\nreport --no-audio / validate: {no_audio / validate:.2f}; audio pass / decode-only floor: "
              f"{(audio - no_audio) / floor:.2f}; report.html {html:.1f} MB")
        if args.long:
            minutes = (args.long - 1) * args.long_seconds / 60  # the songs beyond the first: no fixed cost
            per_minute = (rows[5][1][1] - rows[4][1][1]) / minutes
            print(f"full-length songs: {per_minute:.2f} CPU s per minute of stereo audio; 5,000 songs of 3.5 min "
                  f"would take about {per_minute * 5000 * 3.5 / args.jobs / 60:.0f} min on {args.jobs} cores")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
