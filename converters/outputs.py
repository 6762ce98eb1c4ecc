"""The names of what ``convert`` writes into its output folder DIR, and the row of its manifest.

All per-song files live in ``DIR/dataset``; the run's state and spools in the hidden ``DIR/.ls-acestep``; the
four run-level files at the top of DIR.
"""

from __future__ import annotations

STATE_DIR = ".ls-acestep"
DATASET_DIR = "dataset"
MANIFEST = "annotations_manifest.jsonl"
INDEX = "annotations_index.json"
ACESTEP_DATASET = "acestep_dataset.json"
REPORT = "conversion_report.json"
OUTPUT_FILES = (MANIFEST, INDEX, ACESTEP_DATASET, REPORT)


def manifest_row(tid: int, choice, sidecar: dict, audio: str, stem: str, duration: float | None) -> dict:
    """One task's line in the manifest: where its files are (relative to DIR) and the values ACE-Step reads.
    ``audio`` is the audio's file name in the dataset folder; ``duration`` (seconds) is used when the sidecar has
    none."""
    return {
        "task_id": tid, "annotation_id": choice.id if choice.source == "annotation" else None,
        "prediction_id": choice.id if choice.source == "prediction" else None, "source": choice.source,
        "audio_path": f"{DATASET_DIR}/{audio}", "sidecar_path": f"{DATASET_DIR}/{stem}.json",
        "lyrics_path": f"{DATASET_DIR}/{stem}.txt" if _words(sidecar.get("lyrics")) else None,
        "caption": sidecar.get("caption", ""), "duration": sidecar.get("duration", duration),
        "bpm": sidecar.get("bpm"), "keyscale": sidecar.get("keyscale", ""),
        "timesignature": sidecar.get("timesignature", ""), "language": sidecar.get("language") or "unknown",
    }


def _words(lyrics: object) -> bool:
    """Whether the song has a lyrics file: lyrics with words (convert writes none for "[Instrumental]")."""
    return isinstance(lyrics, str) and lyrics.strip() not in ("", "[Instrumental]")
