"""``ls-acestep report DIR``: what a dataset folder holds, as one HTML page and a JSON file.

The folder is read the way ACE-Step 1.5 reads it, with the converter's readers (``converters.acestep_readers``:
the current release's rules), and checked with ``validate``; the timeline and genre, which only our sidecars
carry, come from ``music_analysis`` in ``<stem>.json``. With audio, every song is decoded once (in ``jobs``
processes) for loudness, true peak, clipping and a fingerprint; songs are compared pairwise by fingerprint for
near-duplicates.

Memory: one row of a few hundred bytes per song plus a 768-value fingerprint (3 KB); one decoded song per process.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from converters.acestep_readers import CURRENT, read_json_object, has_words, scan_folder, stem_path, vocal_status
from converters.json_text import finite_number
from converters.validate import validate_folder
from label_config.vocabulary import KEYSCALES, LANGUAGE_NAMES, TIME_SIGNATURES
from ls_acestep.files import atomic_write

from . import plots
from .audio_stats import FINGERPRINT_BINS, MAX_SECONDS
from .html import write_page

DUPLICATE_SIMILARITY = 0.97  # cosine of fingerprints: re-encodings of one song score above 0.99 (tests)
OUTLIER_LU = 6.0  # LU from the dataset's median loudness: twice the spread that mastering targets allow
TRUE_PEAK_LIMIT = -1.0  # dBTP: EBU R128's maximum; above it a lossy encoding may clip
MIN_SONGS_FOR_OUTLIERS = 5  # a median of fewer songs says nothing
MAX_NOTES_CHARS = 400  # per region in the page's hover text; the JSON keeps no texts at all
MAX_REGIONS = 200  # per song on the page: a song has a dozen sections; a broken sidecar may hold millions
MAX_STATED_BPM = 1000.0  # past ACE-Step's 300 to show a misread tempo, short of values no histogram can bin
MAX_STATED_SECONDS = 24 * 3600.0  # a sidecar stating a longer song is wrong: the measured length is used
JSON_NAME, HTML_NAME = "report.json", "report.html"
MAX_DEFAULT_JOBS = 8  # processes unless --jobs says otherwise: each peaks near 1 GB on a 10-minute stereo song


def _timeline(sidecar: dict) -> list[dict]:
    """The sidecar's ``music_analysis.timeline`` as (start, end, label, notes) dicts; malformed entries skipped."""
    analysis = sidecar.get("music_analysis")
    timeline = analysis.get("timeline") if isinstance(analysis, dict) else None
    out = []
    for item in timeline[:MAX_REGIONS] if isinstance(timeline, list) else ():
        if not isinstance(item, dict):
            continue
        start, end = finite_number(item.get("start_sec")), finite_number(item.get("end_sec"))
        if start is None or end is None or end <= start:
            continue
        notes = item.get("notes") if isinstance(item.get("notes"), str) else ""
        label = item.get("section_label") if isinstance(item.get("section_label"), str) else ""
        out.append({"start": float(start), "end": float(end), "label": label, "notes": notes[:MAX_NOTES_CHARS]})
    return out


def _positive(value: object, limit: float = math.inf) -> float | int | None:
    """``value`` (its type kept) when it is a finite number in (0, ``limit``], else None: no count, plot or JSON
    file can take NaN, Infinity or 1e308."""
    number = finite_number(value)
    return value if number is not None and 0 < number <= limit else None


def read_songs(folder: Path) -> list[dict]:
    """One row per audio file the folder scan finds, with what ACE-Step holds for it and our sidecar's extras."""
    held_by_audio, _csv_warnings = scan_folder(folder, CURRENT)
    rows = []
    for audio, held in held_by_audio.items():
        sidecar = read_json_object(Path(stem_path(audio) + ".json"))
        status = vocal_status(sidecar) if sidecar else None
        duration = _positive(sidecar.get("duration"), MAX_STATED_SECONDS) or _positive(held.duration)
        duration = float(duration) if duration else None
        rows.append({
            "name": str(audio.relative_to(folder)),
            "caption": held.caption if isinstance(held.caption, str) else str(held.caption),
            "labeled": held.labeled,
            "bpm": _positive(held.bpm, MAX_STATED_BPM),
            "keyscale": str(held.keyscale or ""),
            "timesignature": str(held.timesignature or ""),
            "language": str(held.language or "unknown"),
            "instrumental": bool(held.is_instrumental),
            "has_lyrics": has_words(held.lyrics),
            "vocal_by_sidecar": status is False,
            "duration": duration,
            "genre": sidecar.get("genre") if isinstance(sidecar.get("genre"), str) else "",
            "timeline": _timeline(sidecar),
        })
    return rows


CACHE_NAME = "audio-cache.jsonl"  # in the output folder: a re-run measures only new or changed audio files


def _stamp(path: Path) -> str:
    """Size and modification time: a file with the same stamp is taken to hold the same audio."""
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def _pack(result: dict) -> dict:
    """A measurement as a cache line: the fingerprint as base64 float16 (1.5 KB instead of 8 KB of JSON)."""
    vector = result.get("fingerprint")
    packed = dict(result)
    if vector is not None:
        packed["fingerprint"] = base64.b64encode(np.asarray(vector, dtype=np.float16).tobytes()).decode("ascii")
    return packed


def _unpack(line: object) -> dict | None:
    """A cache line's measurement, or None when it is not one of ours (a hand edit, another version's): the song
    is then measured again rather than a malformed fingerprint breaking the duplicate search."""
    if not isinstance(line, dict) or not isinstance(line.get("clipped_runs"), int) or any(
            line.get(key) is not None and finite_number(line.get(key)) is None for key in ("lufs", "true_peak")):
        return None
    result = dict(line)
    packed = result.get("fingerprint")
    if packed is not None:
        try:
            vector = np.frombuffer(base64.b64decode(packed, validate=True), dtype=np.float16).astype(np.float32)
        except (TypeError, ValueError):  # binascii.Error is a ValueError
            return None
        if vector.size != 12 * FINGERPRINT_BINS or not np.all(np.isfinite(vector)):
            return None
        result["fingerprint"] = vector
    return result


def load_cache(path: Path) -> dict[str, dict]:
    """name -> cached line; unreadable lines (an interrupted write, a hand edit) are ignored."""
    cache = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for text in handle:
                try:
                    line = json.loads(text)
                except ValueError:
                    continue
                if isinstance(line, dict) and isinstance(line.get("name"), str):
                    cache[line["name"]] = line
    except OSError:
        pass
    return cache


def measure_songs(folder: Path, names: list[str], cache_path: Path, jobs: int | None, say) -> list[dict]:
    """``audio_stats.measure`` of every song (in ``jobs`` processes), reusing the cache for files whose size and
    modification time are unchanged; the cache is rewritten with the songs of this run."""
    cache = load_cache(cache_path)
    stamps = [_stamp(folder / name) for name in names]
    results: list[dict | None] = [None] * len(names)
    todo = []
    for index, (name, stamp) in enumerate(zip(names, stamps)):
        line = cache.get(name)
        cached = _unpack(line.get("result")) if line is not None and stamp and line.get("stamp") == stamp else None
        if cached is not None:
            results[index] = cached
        else:
            todo.append(index)
    if len(todo) < len(names):
        say(f"audio: {len(names) - len(todo)} song(s) unchanged since the last report, taken from {cache_path.name}")
    for index, result in zip(todo, _measure_all([folder / names[i] for i in todo], jobs, say)):
        results[index] = result
    lines = [json.dumps({"name": n, "stamp": s, "result": _pack(r)}) for n, s, r in zip(names, stamps, results)
             if s and not r.get("error")]
    atomic_write(cache_path, ("\n".join(lines) + "\n").encode("utf-8"))
    return results


def _measure_all(paths: list[Path], jobs: int | None, say) -> list[dict]:
    """``audio_stats.measure`` for every path, in ``jobs`` processes (results in path order)."""
    from concurrent.futures import ProcessPoolExecutor

    from .audio_stats import measure

    jobs = jobs or min(os.cpu_count() or 1, MAX_DEFAULT_JOBS)
    if jobs == 1 or len(paths) < 2:
        results = []
        for index, path in enumerate(paths):
            results.append(measure(path))
            _progress(say, index + 1, len(paths))
        return results
    import multiprocessing

    # spawn: a forked child of a process with BLAS threads can hang; each worker imports numpy/librosa once
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = []
        for index, result in enumerate(pool.map(measure, paths, chunksize=8)):
            results.append(result)
            _progress(say, index + 1, len(paths))
        return results


def _progress(say, done: int, total: int) -> None:
    step = max(1, total // 10)
    if done % step == 0 or done == total:
        say(f"audio: {done}/{total} songs measured")


def loudness_flags(rows: list[dict]) -> None:
    """Add ``flags`` to each row's loudness: clipping, true peak over TRUE_PEAK_LIMIT, silence, and loudness more
    than OUTLIER_LU from the median (with at least MIN_SONGS_FOR_OUTLIERS measured songs)."""
    measured = [r["loudness"]["lufs"] for r in rows if r.get("loudness") and r["loudness"].get("lufs") is not None]
    median = float(np.median(measured)) if len(measured) >= MIN_SONGS_FOR_OUTLIERS else None
    for row in rows:
        loud = row.get("loudness")
        if not loud or loud.get("error"):
            continue
        flags = []
        if loud["clipped_runs"]:
            flags.append(f"clipping ({loud['clipped_runs']} full-scale run(s))")
        if loud["true_peak"] is not None and loud["true_peak"] > TRUE_PEAK_LIMIT:
            flags.append(f"true peak {loud['true_peak']:+.1f} dBTP")
        if loud.get("mixdown"):
            flags.append("measured on a mono mixdown (ffmpeg): loudness not comparable")
        if loud.get("cut"):
            flags.append(f"longer than {MAX_SECONDS:.0f} s: measured on the first {MAX_SECONDS:.0f} s")
        if loud["lufs"] is None:
            flags.append("silent")
        elif median is not None and abs(loud["lufs"] - median) > OUTLIER_LU:
            flags.append(f"{'louder' if loud['lufs'] > median else 'quieter'} than most "
                         f"({loud['lufs'] - median:+.1f} LU from the median)")
        loud["flags"] = flags


def _counts(values, order=()) -> dict[str, int]:
    counts = Counter(v for v in values if v)
    ordered = {k: counts[k] for k in order if counts.get(k)}
    ordered.update({k: v for k, v in counts.most_common() if k not in ordered})
    return ordered


def summarize(rows: list[dict], findings: list, duplicates: list[tuple]) -> dict:
    """Counts and distributions of the songs."""
    vocal = [r for r in rows if r["vocal_by_sidecar"]]
    durations = [r["duration"] for r in rows if r["duration"]]
    loud = [r["loudness"] for r in rows if r.get("loudness") and not r["loudness"].get("error")]
    return {
        "songs": len(rows),
        "with_caption": sum(r["labeled"] for r in rows),
        "hours": sum(durations) / 3600,
        "instrumental": sum(r["instrumental"] for r in rows),
        "instrumental_share": (sum(r["instrumental"] for r in rows) / len(rows)) if rows else None,
        "vocal_by_sidecar": len(vocal),
        "lyrics_coverage": (sum(r["has_lyrics"] for r in vocal) / len(vocal)) if vocal else None,
        "with_timeline": sum(bool(r["timeline"]) for r in rows),
        "problems": sum(1 for f in findings if f.level == "problem"),
        "notes": sum(1 for f in findings if f.level == "note"),
        "measured": len(loud),
        "unreadable_audio": sum(1 for r in rows if r.get("loudness", {}).get("error")),
        "loudness_flags": sum(1 for x in loud if x.get("flags")),
        "median_lufs": float(np.median([x["lufs"] for x in loud if x["lufs"] is not None]))
        if any(x["lufs"] is not None for x in loud) else None,
        "near_duplicates": len(duplicates),
    }


def figures(rows: list[dict], with_audio: bool) -> list[tuple[str, str]]:
    """(caption, data URI) of the page's plots that have data."""
    out = [
        ("Song length (minutes). ACE-Step trains on the first 240 s of each song.",
         plots.histogram({"songs": [r["duration"] / 60 for r in rows if r["duration"]]}, "Duration", "minutes")),
        ("Tempo as ACE-Step reads it (songs without a BPM left out).",
         plots.histogram({"songs": [r["bpm"] for r in rows if r["bpm"]]}, "BPM", "beats per minute", bins=24)),
        ("Key and scale.", plots.bars(_counts((r["keyscale"] for r in rows), KEYSCALES), "Key", limit=30)),
        ("Time signature (the numerator ACE-Step reads).",
         plots.bars(_counts((r["timesignature"] for r in rows), TIME_SIGNATURES), "Time signature")),
        ("Vocal language (unknown: none given).",
         plots.bars(_counts((r["language"] for r in rows), tuple(LANGUAGE_NAMES)), "Language")),
    ]
    if with_audio:
        loud = [r["loudness"] for r in rows if r.get("loudness") and not r["loudness"].get("error")]
        out.append(("Integrated loudness (ITU-R BS.1770-4). Streaming services normalise to about -14 LUFS.",
                    plots.histogram({"songs": [x["lufs"] for x in loud]}, "Loudness", "LUFS")))
        out.append(("True peak (4x oversampled); above -1 dBTP a lossy encoding may clip.",
                    plots.histogram({"songs": [x["true_peak"] for x in loud]}, "True peak", "dBTP")))
    return [(caption, uri) for caption, uri in out if uri]


def strip(row: dict) -> dict:
    """A song's timeline as percentages of its length, for the page's strip."""
    length = row["duration"] or max((r["end"] for r in row["timeline"]), default=0.0)
    regions = []
    for region in row["timeline"] if length else ():
        left = max(0.0, min(100.0, 100 * region["start"] / length))
        width = max(0.0, min(100.0 - left, 100 * (region["end"] - region["start"]) / length))
        regions.append({**region, "left": round(left, 3), "width": round(width, 3),
                        "colour": plots.section_colour(region["label"])})
    return {"name": row["name"], "regions": regions, "duration": length}


def run_report(folder: Path, out: Path, with_audio: bool = True, jobs: int | None = None,
               say=lambda line: None) -> tuple[dict, Path, Path]:
    """Write report.json and report.html for ``folder`` into ``out``; returns (document, json path, html path)."""
    from .audio_stats import near_duplicates

    folder, out = Path(folder), Path(out)
    say(f"reading {folder} ...")
    rows = read_songs(folder)
    inside = out.resolve()  # our own output inside the folder is no orphan for validate to report
    findings = [f for f in validate_folder(folder) if inside not in f.path.resolve().parents]
    duplicates: list[tuple] = []
    if with_audio and rows:
        say(f"measuring the audio of {len(rows)} song(s) ...")
        out.mkdir(parents=True, exist_ok=True)
        results = measure_songs(folder, [r["name"] for r in rows], out / CACHE_NAME, jobs, say)
        vectors = {}
        for row, result in zip(rows, results):
            result = dict(result)
            vector = result.pop("fingerprint", None)
            if vector is not None:
                vectors[row["name"]] = np.asarray(vector, dtype=np.float32)
            row["loudness"] = result
            if not row["duration"] and result.get("seconds"):
                row["duration"] = result["seconds"]
        loudness_flags(rows)
        duplicates = near_duplicates(vectors, DUPLICATE_SIMILARITY)
    counts = summarize(rows, findings, duplicates)
    doc = {
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "folder": str(folder),
        "audio_measured": with_audio,
        "counts": counts,
        "duplicates": [{"a": a, "b": b, "similarity": round(s, 4)} for a, b, s in duplicates],
        "problems": [{"path": str(f.path.relative_to(folder)) if folder in f.path.parents else str(f.path),
                      "level": f.level, "message": f.message} for f in findings],
        "songs": [{k: v for k, v in r.items() if k != "timeline"} | {"regions": len(r["timeline"])} for r in rows],
    }
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    atomic_write(json_path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    flagged = [r for r in rows if r.get("loudness", {}).get("flags")]
    legend = sorted({reg["label"] for r in rows for reg in r["timeline"]}, key=_label_order)
    html_path = write_page(out / HTML_NAME, "report.html", doc=doc, figures=figures(rows, with_audio),
                           strips=[strip(r) for r in rows], flagged=flagged,
                           legend=[(label, plots.section_colour(label)) for label in legend],
                           unreadable=[r for r in rows if r.get("loudness", {}).get("error")])
    return doc, json_path, html_path


def _label_order(label: str) -> tuple:
    return (0, list(plots.SECTION_COLOURS).index(label)) if label in plots.SECTION_COLOURS else (1, label)
