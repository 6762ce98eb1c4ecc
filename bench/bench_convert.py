"""Benchmark of `ls-acestep convert` against label-studio-sdk's Converter (JSON_MIN) on the same export.

Makes an export of N tasks (default 10,000) with 8 regions each (label, notes and lyrics per region, song-level
fields), then, each in a fresh subprocess so peak memory (ru_maxrss) is that run's alone:
  - ours: convert --audio none into a fresh folder (sidecar, lyrics, manifest, index, dataset file, report);
  - yardstick: label_studio_sdk.converter.Converter(...).convert_to_json_min on the same export;
  - floor: only creating the two text files per task that the converter must write (temp file + rename), to
    show what the file system alone costs (file creation is slow on some virtual machines).
Prints a table with wall time, tasks per second and peak memory, and the ratio ours/yardstick.

    python bench/bench_convert.py [--tasks 10000] [--repeat 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ("Intro", "Verse", "Pre-Chorus", "Chorus", "Verse", "Chorus", "Bridge", "Outro")
KEYS = ("Am", "C major", "F#m", "Bb", "e minor", "G")


def make_task(tid: int) -> dict:
    """One task of Label Studio 1.23's export shape: 8 regions of 24 s with notes and lyrics, song-level fields."""
    result = []
    for n, label in enumerate(LABELS):
        rid = f"t{tid}r{n}"
        start, end = n * 24.0, (n + 1) * 24.0
        value = {"start": start, "end": end, "channel": 0}
        result.append({"id": rid, "from_name": "section", "to_name": "audio", "type": "labels",
                       "original_length": 192.0, "value": {**value, "labels": [label]}})
        result.append({"id": rid, "from_name": "segment_notes", "to_name": "audio", "type": "textarea",
                       "value": {**value, "text": [f"{label.lower()} with piano, bass and drums; bar {n * 8}"]}})
        result.append({"id": rid, "from_name": "segment_lyrics", "to_name": "audio", "type": "textarea",
                       "value": {**value, "text": [f"line one of part {n}\nline two of part {n}"]}})
    for name, text in (("caption", f"Song {tid}: an upbeat pop track with piano, bass and drums."),
                       ("genre", "pop\ndance"), ("instruments", "piano\nbass\ndrums"), ("mix_notes", "wide")):
        result.append({"id": f"{name}{tid}", "from_name": name, "to_name": "audio", "type": "textarea",
                       "value": {"text": [text]}})
    result.append({"id": f"bpm{tid}", "from_name": "bpm", "to_name": "audio", "type": "number",
                   "value": {"number": 90 + tid % 60}})
    for name, value in (("keyscale", KEYS[tid % len(KEYS)]), ("timesignature", "4/4"),
                        ("vocal_language", "English")):
        result.append({"id": f"{name}{tid}", "from_name": name, "to_name": "audio", "type": "choices",
                       "value": {"choices": [value]}})
    stamp = "2026-11-27T07:13:54.595196Z"
    annotation = {"id": tid, "completed_by": 1, "result": result, "was_cancelled": False, "ground_truth": False,
                  "created_at": stamp, "updated_at": stamp, "draft_created_at": None, "lead_time": 42.0,
                  "prediction": {}, "result_count": len(result), "unique_id": f"u{tid}", "import_id": None,
                  "last_action": None, "bulk_created": False, "task": tid, "project": 1, "updated_by": 1,
                  "parent_prediction": None, "parent_annotation": None, "last_created_by": None}
    name = f"{tid:08x}-track {tid}.mp3"
    return {"id": tid, "annotations": [annotation], "file_upload": name, "drafts": [], "predictions": [],
            "data": {"audio": f"/data/upload/1/{name.replace(' ', '%20')}"}, "meta": {}, "created_at": stamp,
            "updated_at": stamp, "allow_skip": True, "inner_id": tid, "total_annotations": 1,
            "cancelled_annotations": 0, "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0,
            "last_comment_updated_at": None, "project": 1, "updated_by": 1, "comment_authors": []}


def write_export(path: Path, tasks: int) -> None:
    """Stream the export to disk (the generator never holds all tasks either)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("[")
        for tid in range(1, tasks + 1):
            out.write(("," if tid > 1 else "") + json.dumps(make_task(tid)))
        out.write("]")


def worker(kind: str, export: Path, out: Path) -> None:
    """Run one conversion in this process and print {"seconds", "cpu", "peak_mb"} as JSON (wall and CPU
    seconds of the conversion call, peak resident memory of the whole process in MB)."""
    if kind == "ours":
        from converters.convert import Options, convert

        start, cpu = time.perf_counter(), time.process_time()
        summary = convert(Options(export=export, out=out, audio="none"), say=lambda line: None)
        seconds = time.perf_counter() - start
        assert summary.exit_code == 0 and summary.converted > 0, summary
    elif kind == "floor":
        # What this file system charges for our output alone: two new files per task, written as the converter
        # writes them (temp file + rename), with the converter's own sidecar and lyrics bytes.
        import ijson

        from converters.json_text import sidecar_bytes
        from ls_acestep.files import atomic_write

        with open(export, "rb") as handle:  # a payload of sidecar size or more: the first task as JSON
            first = next(ijson.items(handle, "item", use_float=True))
        sidecar = sidecar_bytes({"task": first})
        count = int(export.name.split("-")[0]) if export.name[0].isdigit() else 10_000
        out.mkdir(parents=True)
        start, cpu = time.perf_counter(), time.process_time()
        for n in range(count):
            atomic_write(out / f"track {n}.json", sidecar)
            atomic_write(out / f"track {n}.lyrics.txt", sidecar[:400])
        seconds = time.perf_counter() - start
    else:
        from label_studio_sdk.converter import Converter

        from label_config import shipped_config

        start, cpu = time.perf_counter(), time.process_time()
        Converter(config=shipped_config(), project_dir=None, download_resources=False).convert_to_json_min(
            str(export), str(out), is_dir=False)
        seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu, "peak_mb": peak_kb / 1024}))


def measure(kind: str, export: Path, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, str(export), str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest is reported")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "EXPORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, export, out = args.worker
        worker(kind, Path(export), Path(out))
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        export = work / f"{args.tasks}-tasks-export.json"
        write_export(export, args.tasks)
        size_mb = export.stat().st_size / 1e6
        runs = {"ours": [], "sdk": [], "floor": []}
        for _ in range(args.repeat):
            for kind in runs:  # interleaved, so both see the same machine load
                runs[kind].append(measure(kind, export, work / f"out-{kind}"))
        best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
        peak = {k: max(r["peak_mb"] for r in v) for k, v in runs.items()}
        print(f"export: {args.tasks} tasks x 8 regions, {size_mb:.1f} MB; best of {args.repeat}")
        print(f"{'converter':<36} {'wall s':>7} {'CPU s':>7} {'tasks/s':>8} {'peak MB':>8}")
        for kind, title in (("ours", "ls-acestep convert --audio none"),
                            ("sdk", "label-studio-sdk Converter JSON_MIN"),
                            ("floor", "floor: 2 new files per task only")):
            r = best[kind]
            print(f"{title:<36} {r['seconds']:>7.2f} {r['cpu']:>7.2f} {args.tasks / r['seconds']:>8.0f} "
                  f"{peak[kind]:>8.0f}")
        ratio = best["ours"]["seconds"] / best["sdk"]["seconds"]
        cpu_ratio = best["ours"]["cpu"] / best["sdk"]["cpu"]
        print(f"ratio ours/yardstick: wall {ratio:.2f}, CPU {cpu_ratio:.2f} (target <= 1.0); peak "
              f"{peak['ours']:.0f} MB (target < 300 MB)")
        rest = (best["ours"]["seconds"] - best["floor"]["seconds"]) / best["sdk"]["seconds"]
        print(f"ours without the file-creation floor / yardstick: {rest:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
