"""`ls-acestep convert`: real exports of Label Studio 1.23's shape (see the snapshot example in the reference
notes), real audio files in several formats, every rule of the converter and the bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from converters.convert import Options, convert
from ls_acestep.cli import main
from ls_acestep.media import MediaSource

# --- exports of the real shape ---------------------------------------------------------------------------------

STAMP = "2026-11-27T07:13:54.595196Z"


def region(rid: str, start: float, end: float, label: str, notes: str | None = None,
           lyrics: str | None = None) -> list[dict]:
    """A labelled region and its per-region texts, sharing the result id as Label Studio stores them."""
    items = [{"id": rid, "from_name": "section", "to_name": "audio", "type": "labels",
              "value": {"start": start, "end": end, "channel": 0, "labels": [label]}}]
    for name, text in (("segment_notes", notes), ("segment_lyrics", lyrics)):
        if text is not None:
            items.append({"id": rid, "from_name": name, "to_name": "audio", "type": "textarea",
                          "value": {"start": start, "end": end, "text": [text]}})
    return items


def text(name: str, value: str, rid: str | None = None) -> dict:
    return {"id": rid or f"{name}1", "from_name": name, "to_name": "audio", "type": "textarea",
            "value": {"text": [value]}}


def choice(name: str, value: str) -> dict:
    return {"id": f"{name}1", "from_name": name, "to_name": "audio", "type": "choices",
            "value": {"choices": [value]}}


def number(name: str, value: float) -> dict:
    return {"id": f"{name}1", "from_name": name, "to_name": "audio", "type": "number", "value": {"number": value}}


def annotation(aid: int, result: list, updated_at: str = STAMP, cancelled: bool = False,
               ground_truth: bool = False, completed_by: int = 1) -> dict:
    return {"id": aid, "completed_by": completed_by, "result": result, "was_cancelled": cancelled,
            "ground_truth": ground_truth, "created_at": updated_at, "updated_at": updated_at,
            "draft_created_at": None, "lead_time": 12.5, "prediction": {}, "result_count": len(result),
            "unique_id": f"uid-{aid}", "import_id": None, "last_action": None, "bulk_created": False, "task": 1,
            "project": 1, "updated_by": completed_by, "parent_prediction": None, "parent_annotation": None,
            "last_created_by": None}


def prediction(pid: int, result: list, model_version: str = "qwen2-audio-v1", created_at: str = STAMP) -> dict:
    return {"id": pid, "result": result, "model_version": model_version, "created_ago": "0 minutes",
            "score": 0.87, "cluster": None, "neighbors": None, "mislabeling": 0.0, "created_at": created_at,
            "updated_at": created_at, "model": None, "model_run": None, "task": 1, "project": 1}


def task(tid: int, audio: str, annotations: list = (), predictions: list = ()) -> dict:
    return {"id": tid, "annotations": list(annotations), "file_upload": audio.rsplit("/", 1)[-1], "drafts": [],
            "predictions": list(predictions), "data": {"audio": audio}, "meta": {}, "created_at": STAMP,
            "updated_at": STAMP, "allow_skip": True, "inner_id": tid, "total_annotations": len(annotations),
            "cancelled_annotations": 0, "total_predictions": len(predictions), "comment_count": 0,
            "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 1, "updated_by": 1,
            "comment_authors": []}


def write_export(path: Path, tasks: list) -> Path:
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


FULL_RESULT = [
    # Out of time order and interleaved, as Label Studio may store them: pairing must go by id.
    *region("r2", 8.0, 16.0, "Chorus", notes="big drums\nstacked vocals", lyrics="Oh we rise\n(rise up)"),
    *region("r1", 0.0, 8.0, "Verse", notes="piano and voice", lyrics="Morning light"),
    *region("r3", 16.0, 29.0, "Outro", notes="fade"),  # ends after the ~22 s song: clamped
    text("caption", "A bright pop song with piano, drums and a soaring chorus."),
    text("genre", "pop\nsynth-pop\n"),
    text("instruments", "piano\n- drums\nbass"),
    text("effects", "reverb"),
    text("vocal_characteristics", "female lead"),
    text("mix_notes", "wide stereo"),
    number("bpm", 119.6),
    choice("keyscale", "Gmaj"),
    choice("timesignature", "4/4"),
    choice("vocal_language", "English"),
]


@pytest.fixture
def media(tmp_path, song_files):
    """A copy of Label Studio's media folder with the song uploaded in every format (upload prefix included)."""
    root = tmp_path / "media"
    folder = root / "upload" / "1"
    folder.mkdir(parents=True)
    for n, (ext, path) in enumerate(sorted(song_files.items())):
        os.link(path, folder / f"{n:08x}-song{ext}") if _same_fs(path, folder) else \
            (folder / f"{n:08x}-song{ext}").write_bytes(path.read_bytes())
    return root


def _same_fs(a: Path, folder: Path) -> bool:
    return os.stat(a).st_dev == os.stat(folder).st_dev


def upload(ext: str, song_files) -> str:
    n = sorted(song_files).index(ext)
    return f"/data/upload/1/{n:08x}-song{ext}"


def true_length(song_files) -> float:
    """The rendered song's length in seconds (the synthesiser's release tail makes it a bit over 20 s)."""
    import soundfile

    return soundfile.info(str(song_files[".wav"])).duration


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["convert", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


# --- the happy path ------------------------------------------------------------------------------------------

def test_full_annotation_becomes_sidecar_lyrics_manifest_index_dataset_and_report(tmp_path, media, song_files):
    export = write_export(tmp_path / "export.json",
                          [task(1, upload(".flac", song_files), [annotation(11, FULL_RESULT)])])
    code, output = run_cli(export, "--out", tmp_path / "out", "--media-root", media)
    assert code == 0, output
    out = tmp_path / "out"
    ds = out / "dataset"
    assert (ds / "song.flac").read_bytes() == song_files[".flac"].read_bytes()  # upload prefix stripped

    side = read_json(ds / "song.json")
    # ACE-Step's keys, normalised
    assert side["caption"].startswith("A bright pop song")
    assert side["bpm"] == 120 and isinstance(side["bpm"], int)
    assert side["keyscale"] == "G major" and side["timesignature"] == "4" and side["language"] == "en"
    # the original pipeline's keys
    assert side["vocal_language"] == "en"
    assert side["duration"] == pytest.approx(true_length(song_files), abs=1e-3)  # measured from the audio file
    assert side["genre"] == "pop, synth-pop"
    analysis = side["music_analysis"]
    assert analysis["instruments"] == ["piano", "drums", "bass"]  # one entry per line
    assert analysis["genres"] == ["pop", "synth-pop"] and analysis["mix_notes"] == ["wide stereo"]
    timeline = analysis["timeline"]
    assert [r["section_label"] for r in timeline] == ["Verse", "Chorus", "Outro"]  # time order
    assert timeline[1]["notes"] == "big drums\nstacked vocals"  # paired by id, not by position
    assert timeline[1]["lyrics"] == "Oh we rise\n(rise up)"
    assert timeline[2]["end_sec"] == pytest.approx(side["duration"], abs=1e-3)  # clamped into [0, duration]
    assert side["provenance"] == {"task_id": 1, "source": "annotation", "annotation_id": 11, "annotator": 1,
                                  "updated_at": STAMP, "audio": upload(".flac", song_files), "ground_truth": False}

    assert (ds / "song.txt").read_text(encoding="utf-8") == (  # <stem>.txt: every ACE-Step release reads it
        "[Verse]\nMorning light\n\n[Chorus]\nOh we rise\n(rise up)\n")
    assert not (ds / "song.lyrics.txt").exists()
    # the early release reads caption, BPM and key only from a CSV in its column format
    assert (ds / "acestep_metadata.csv").read_text(encoding="utf-8") == (
        '"File","BPM","Key","Caption"\n' f'"song.flac","120","G major","{side["caption"]}"\n')

    rows = [json.loads(line) for line in (out / "annotations_manifest.jsonl").read_text().splitlines()]
    assert rows == [{"task_id": 1, "annotation_id": 11, "prediction_id": None, "source": "annotation",
                     "audio_path": "dataset/song.flac", "sidecar_path": "dataset/song.json",
                     "lyrics_path": "dataset/song.txt", "caption": side["caption"],
                     "duration": side["duration"], "bpm": 120, "keyscale": "G major", "timesignature": "4",
                     "language": "en"}]
    index = read_json(out / "annotations_index.json")
    assert index["records"] == rows and index["counts"]["converted"] == 1 and index["generated_at"]

    dataset = read_json(out / "acestep_dataset.json")
    assert dataset["metadata"]["num_samples"] == 1 and dataset["metadata"]["all_instrumental"] is False
    sample = dataset["samples"][0]
    assert sample["audio_path"] == str((ds / "song.flac").resolve()) and sample["filename"] == "song.flac"
    assert sample["duration"] == int(true_length(song_files)) and sample["bpm"] == 120 and sample["language"] == "en"
    assert sample["lyrics"].startswith("[Verse]") and sample["is_instrumental"] is False
    assert sample["labeled"] is True and sample["genre"] == "pop, synth-pop"

    report = read_json(out / "conversion_report.json")
    assert report["problems"] == []
    warnings = " | ".join(report["warnings"][0]["warnings"])
    assert "'Gmaj' written as 'G major'" in warnings and "'4/4' written as '4'" in warnings
    assert "'English' written as 'en'" in warnings and "clamped" in warnings


@pytest.mark.parametrize("ext", [".wav", ".mp3", ".ogg", ".m4a", ".opus"])
def test_duration_is_measured_from_every_format(tmp_path, media, song_files, ext):
    export = write_export(tmp_path / "e.json", [task(7, upload(ext, song_files),
                                                     [annotation(1, [text("caption", "c")])])])
    summary = convert(Options(export, tmp_path / "out", MediaSource(media_root=media)), say=lambda _: None)
    assert summary.exit_code == 0
    side = read_json(tmp_path / "out" / "dataset" / "song.json")
    assert side["duration"] == pytest.approx(true_length(song_files), abs=0.1)  # codec padding is allowed
    assert (tmp_path / "out" / "dataset" / f"song{ext}").is_file()


def test_reference_snapshot_example_converts(tmp_path, song_files):
    """The real snapshot from Label Studio 1.23.2 (one task, two regions with notes, a caption)."""
    reference = Path("/work/shared/reference/ls-1.23.2-snapshot-export-example.json")
    if not reference.exists():
        pytest.skip("reference notes not present on this machine")
    upload_dir = tmp_path / "media" / "upload" / "1"
    upload_dir.mkdir(parents=True)
    (upload_dir / "e799742c-song.wav").write_bytes(song_files[".wav"].read_bytes())
    code, output = run_cli(reference, "--out", tmp_path / "out", "--media-root", tmp_path / "media")
    assert code == 0, output
    side = read_json(tmp_path / "out" / "dataset" / "song.json")
    assert side["caption"] == "Synthetic three-tone test clip (human-edited)"  # the annotation, not the prediction
    assert [(r["section_label"], r["notes"]) for r in side["music_analysis"]["timeline"]] == [
        ("Intro", "low 220 Hz tone"), ("Verse", "440 Hz tone")]


def test_lyrics_song_level_wins_and_instrumental_is_marked(tmp_path, media, song_files):
    tasks = [
        task(1, upload(".wav", song_files), [annotation(1, [
            *region("a", 0, 5, "Verse", lyrics="ignored region words"),
            text("lyrics", "[Verse]\nTyped by hand\n"), text("caption", "x")])]),
        task(2, upload(".flac", song_files), [annotation(2, [*region("a", 0, 5, "Intro", notes="pads"),
                                                              text("caption", "ambient")])]),
    ]
    convert(Options(write_export(tmp_path / "e.json", tasks), tmp_path / "out", MediaSource(media_root=media)),
            say=lambda _: None)
    ds = tmp_path / "out" / "dataset"
    assert (ds / "song.txt").read_text() == "[Verse]\nTyped by hand\n"
    # the second task's file is also called song.* : it gets its own stem. Nobody said whether it has vocals:
    # no lyrics file (ACE-Step supplies [Instrumental]), and "unknown", reported, never "instrumental"
    assert not (ds / "song-2.txt").exists() and not (ds / "song-2.lyrics.txt").exists()
    side = read_json(ds / "song-2.json")
    assert "language" not in side and side["vocal_language"] == "unknown" and side["is_instrumental"] is None
    warnings = {w["task_id"]: " ".join(w["warnings"]) for w in
                read_json(tmp_path / "out" / "conversion_report.json")["warnings"]}
    assert "vocals unknown" in warnings[2] and 1 not in warnings


def test_instrumental_gets_no_lyrics_file_and_a_vocal_song_without_lyrics_is_reported(tmp_path, media,
                                                                                       song_files):
    tasks = [task(1, upload(".wav", song_files), [annotation(1, [text("caption", "x"),
                                                                 choice("vocal_language", "instrumental")])]),
             task(2, upload(".flac", song_files), [annotation(2, [text("caption", "y"), choice("vocal_language", "de"),
                                                                  text("vocal_characteristics", "raspy tenor")])])]
    convert(Options(write_export(tmp_path / "e.json", tasks), tmp_path / "out", MediaSource(media_root=media)),
            say=lambda _: None)
    ds = tmp_path / "out" / "dataset"
    assert sorted(p.name for p in ds.iterdir()) == ["acestep_metadata.csv", "song-2.flac", "song-2.json",
                                                    "song.json", "song.wav"]
    inst, vocal = read_json(ds / "song.json"), read_json(ds / "song-2.json")
    # ACE-Step's folder scan: no lyrics file and no "language" keep a song instrumental
    assert "language" not in inst and inst["vocal_language"] == "instrumental" and inst["is_instrumental"] is True
    assert vocal["language"] == "de" and vocal["is_instrumental"] is False and vocal["lyrics"] == "[Instrumental]"
    report = read_json(tmp_path / "out" / "conversion_report.json")
    warnings = {w["task_id"]: " ".join(w["warnings"]) for w in report["warnings"]}
    assert "vocal language 'de'" in warnings[2] and "raspy tenor" in warnings[2] and 1 not in warnings
    samples = {s["filename"]: s for s in read_json(tmp_path / "out" / "acestep_dataset.json")["samples"]}
    assert samples["song.wav"]["is_instrumental"] is True and samples["song.wav"]["language"] == "unknown"
    assert samples["song-2.flac"]["is_instrumental"] is False and samples["song-2.flac"]["raw_lyrics"] == ""


# --- which annotation ------------------------------------------------------------------------------------------

def test_ground_truth_beats_a_newer_annotation(tmp_path, media, song_files):
    anns = [annotation(1, [text("caption", "ground truth")], updated_at="2026-01-01T00:00:00Z", ground_truth=True),
            annotation(2, [text("caption", "newer")], updated_at="2026-06-01T00:00:00Z")]
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files), anns)])
    convert(Options(export, tmp_path / "out", MediaSource(media_root=media)), say=lambda _: None)
    side = read_json(tmp_path / "out" / "dataset" / "song.json")
    assert side["caption"] == "ground truth" and side["provenance"]["annotation_id"] == 1


def test_newest_non_cancelled_annotation_is_used(tmp_path, media, song_files):
    anns = [annotation(1, [text("caption", "old")], updated_at="2026-01-01T00:00:00Z"),
            annotation(2, [text("caption", "newest")], updated_at="2026-03-01T00:00:00Z", completed_by=7),
            annotation(3, [], updated_at="2026-09-01T00:00:00Z", cancelled=True)]
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files), anns)])
    convert(Options(export, tmp_path / "out", MediaSource(media_root=media)), say=lambda _: None)
    side = read_json(tmp_path / "out" / "dataset" / "song.json")
    assert side["caption"] == "newest" and side["provenance"]["annotator"] == 7


def test_predictions_only_with_the_flag(tmp_path, media, song_files):
    preds = [prediction(5, [text("caption", "older model")], "v1", "2026-01-01T00:00:00Z"),
             prediction(6, [text("caption", "newer model")], "v2", "2026-02-01T00:00:00Z")]
    tasks = [task(1, upload(".wav", song_files), [annotation(1, [], cancelled=True)], preds)]
    export = write_export(tmp_path / "e.json", tasks)

    code, output = run_cli(export, "--out", tmp_path / "a", "--media-root", media)
    assert code == 1 and "task 1" in output and "--use-predictions" in output
    report = read_json(tmp_path / "a" / "conversion_report.json")
    assert report["problems"][0]["status"] == "skipped" and "cancelled" in report["problems"][0]["reason"]
    assert not (tmp_path / "a" / "dataset" / "song.json").exists()

    code, output = run_cli(export, "--out", tmp_path / "b", "--media-root", media, "--use-predictions")
    assert code == 0, output
    side = read_json(tmp_path / "b" / "dataset" / "song.json")
    assert side["caption"] == "newer model"
    assert side["provenance"]["source"] == "prediction" and side["provenance"]["model_version"] == "v2"
    assert side["provenance"]["prediction_id"] == 6
    row = json.loads((tmp_path / "b" / "annotations_manifest.jsonl").read_text())
    assert row["source"] == "prediction" and row["prediction_id"] == 6


def test_plain_export_with_prediction_ids_explains_the_snapshot(tmp_path, media, song_files):
    tasks = [task(1, upload(".wav", song_files), [], [])]
    tasks[0]["predictions"] = [12]  # the plain export lists prediction ids only
    code, output = run_cli(write_export(tmp_path / "e.json", tasks), "--out", tmp_path / "o",
                           "--media-root", media, "--use-predictions")
    assert code == 1 and "snapshot" in output


# --- normalisation -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,expected", [("Am", "A minor"), ("A min", "A minor"), ("a minor", "A minor"),
                                          ("Bbm", "Bb minor"), ("F#", "F# major")])
def test_keys_people_type_are_normalised(tmp_path, media, song_files, key, expected):
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files),
                                                     [annotation(1, [text("caption", "c"), choice("keyscale", key)])])])
    convert(Options(export, tmp_path / "out", MediaSource(media_root=media)), say=lambda _: None)
    assert read_json(tmp_path / "out" / "dataset" / "song.json")["keyscale"] == expected


def test_bpm_out_of_range_and_unknown_values_are_dropped_with_warnings(tmp_path, media, song_files):
    result = [text("caption", "c"), number("bpm", 500), choice("keyscale", "H dorian"),
              choice("timesignature", "7/8"), choice("vocal_language", "Klingon")]
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files), [annotation(1, result)])])
    lines = []
    summary = convert(Options(export, tmp_path / "out", MediaSource(media_root=media)), say=lines.append)
    assert summary.exit_code == 0 and summary.with_warnings == 1
    side = read_json(tmp_path / "out" / "dataset" / "song.json")
    assert "bpm" not in side and "keyscale" not in side and "timesignature" not in side
    # no words, no language: vocals unknown (never "instrumental" just because nothing was filled in)
    assert "language" not in side and side["vocal_language"] == "unknown" and side["is_instrumental"] is None
    warnings = read_json(tmp_path / "out" / "conversion_report.json")["warnings"][0]["warnings"]
    assert any("bpm '500" in w and "dropped" in w for w in warnings)
    assert any("'H dorian' not understood" in w for w in warnings)
    assert any("'Klingon' not understood" in w for w in warnings)


def test_a_clamp_is_warned_only_when_the_printed_times_change(tmp_path):
    """A region that ends a fraction of a millisecond past the song's end is clamped silently (the sidecar keeps
    milliseconds, so nothing a person could see changed); one that ends past it by more is warned about."""
    result = [*region("seg15", 209.839, 213.9714, "Outro"), *region("seg16", 100.0, 214.5, "Bridge"),
              text("caption", "c")]
    data = {"audio": "/data/upload/1/abcdef12-long.wav", "duration": 213.971}
    tasks = [{**task(1, data["audio"], [annotation(1, result)]), "data": data}]
    code, output = run_cli(write_export(tmp_path / "e.json", tasks), "--out", tmp_path / "out", "--audio", "none")
    assert code == 0, output
    warnings = read_json(tmp_path / "out" / "conversion_report.json")["warnings"][0]["warnings"]
    assert not any("seg15" in w for w in warnings), warnings
    assert "region seg16: 100.000-214.500 s clamped to 100.000-213.971 s (song length 213.971 s)" in warnings
    timeline = read_json(tmp_path / "out" / "dataset" / "long.json")["music_analysis"]["timeline"]
    assert [r["end_sec"] for r in timeline] == [213.971, 213.971]  # clamped all the same


def test_convert_help_names_the_label_studio_variables():
    result = CliRunner().invoke(main, ["convert", "--help"])
    assert result.exit_code == 0
    assert "LABEL_STUDIO_URL" in result.output and "LABEL_STUDIO_API_KEY" in result.output


# --- bad input ---------------------------------------------------------------------------------------------------

def test_json_min_is_rejected_with_what_to_export(tmp_path):
    rows = [{"audio": "/data/upload/1/abcdef12-song.wav", "id": 1, "section": [{"start": 0, "end": 2,
             "labels": ["Intro"]}], "segment_notes": ["low tone"], "annotator": 1, "annotation_id": 1,
             "created_at": STAMP, "updated_at": STAMP, "lead_time": 3.0}]
    code, output = run_cli(write_export(tmp_path / "min.json", rows), "--out", tmp_path / "out")
    assert code == 2 and "JSON_MIN" in output and 'as "JSON"' in output
    assert "Traceback" not in output
    assert not (tmp_path / "out").exists()  # unusable input writes nothing


@pytest.mark.parametrize("content", ['{"tasks": []}', "[1, 2, 3]", '[{"foo": 1}]', "not json at all", ""])
def test_not_an_export_exits_2(tmp_path, content):
    export = tmp_path / "x.json"
    export.write_text(content)
    code, output = run_cli(export, "--out", tmp_path / "out")
    assert code == 2 and "error:" in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_missing_export_file_exits_2(tmp_path):
    code, output = run_cli(tmp_path / "nope.json", "--out", tmp_path / "out")
    assert code == 2 and "nope.json" in output


def test_truncated_export_keeps_what_was_read_and_exits_2(tmp_path, media, song_files):
    tasks = [task(1, upload(".wav", song_files), [annotation(1, [text("caption", "first")])]),
             task(2, upload(".flac", song_files), [annotation(2, [text("caption", "second")])])]
    raw = json.dumps(tasks)
    export = tmp_path / "cut.json"
    export.write_text(raw[: raw.index('"id": 2') + 20])
    code, output = run_cli(export, "--out", tmp_path / "out", "--media-root", media)
    assert code == 2 and "truncated" in output
    assert read_json(tmp_path / "out" / "dataset" / "song.json")["caption"] == "first"
    assert read_json(tmp_path / "out" / "conversion_report.json")["exit_code"] == 2


def test_missing_audio_and_malformed_tasks_are_reported_and_the_rest_converted(tmp_path, media, song_files):
    good = task(3, upload(".wav", song_files), [annotation(3, [text("caption", "fine")])])
    missing = task(4, "/data/upload/1/deadbeef-gone.wav", [annotation(4, [text("caption", "x")])])
    no_data = task(5, "x", [annotation(5, [text("caption", "x")])])
    del no_data["data"]
    bad_annotations = task(6, upload(".flac", song_files))
    bad_annotations["annotations"] = "oops"
    bad_result = task(8, upload(".ogg", song_files), [annotation(8, [42, {"from_name": "caption"},
                                                                        text("caption", "kept")])])
    export = write_export(tmp_path / "e.json", [missing, good, no_data, "not a task", bad_annotations, bad_result])
    code, output = run_cli(export, "--out", tmp_path / "out", "--media-root", media)
    assert code == 1
    assert "task 4" in output and "gone.wav" in output and "--media-root" in output
    assert "task 5: malformed task" in output and "task 6: malformed task" in output
    assert "task #4 in the export" in output
    ds = tmp_path / "out" / "dataset"
    assert read_json(ds / "song.json")["caption"] == "fine"
    assert read_json(ds / "song-8.json")["caption"] == "kept"  # odd result items are warned about, not fatal
    report = read_json(tmp_path / "out" / "conversion_report.json")
    assert {(p["task_id"], p["status"]) for p in report["problems"]} == {
        (4, "failed"), (5, "failed"), (None, "failed"), (6, "failed")}
    assert report["counts"]["converted"] == 2 and report["counts"]["failed"] == 4


def test_unreadable_audio_is_a_failed_task(tmp_path, media, song_files):
    (media / "upload" / "1" / "abcdef12-broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-broken.wav",
                                                     [annotation(1, [text("caption", "c")])])])
    code, output = run_cli(export, "--out", tmp_path / "out", "--media-root", media)
    assert code == 1 and "task 1" in output and "broken.wav" in output and "not a readable audio file" in output


# --- names -------------------------------------------------------------------------------------------------------

def test_unicode_percent_encoded_names_and_clashing_stems(tmp_path, song_files):
    folder = tmp_path / "media" / "upload" / "2"
    folder.mkdir(parents=True)
    for name in ("0123abcd-café noir.wav", "89abcdef-café noir.wav", "deadbeef-日本の歌.flac"):
        source = song_files[".flac" if name.endswith(".flac") else ".wav"]
        (folder / name).write_bytes(source.read_bytes())
    tasks = [task(20, "/data/upload/2/0123abcd-caf%C3%A9%20noir.wav", [annotation(1, [text("caption", "a")])]),
             task(21, "/data/upload/2/89abcdef-caf%C3%A9%20noir.wav", [annotation(2, [text("caption", "b")])]),
             task(22, "/data/upload/2/deadbeef-%E6%97%A5%E6%9C%AC%E3%81%AE%E6%AD%8C.flac",
                  [annotation(3, [text("caption", "c")])])]
    export = write_export(tmp_path / "e.json", tasks)
    for _ in range(2):  # a re-run gives the same stems
        convert(Options(export, tmp_path / "out", MediaSource(media_root=tmp_path / "media")), say=lambda _: None)
        names = sorted(p.name for p in (tmp_path / "out" / "dataset").iterdir())
        assert names == sorted(["café noir.wav", "café noir.json", "café noir-21.wav", "café noir-21.json",
                                "日本の歌.flac", "日本の歌.json", "acestep_metadata.csv"])
    assert read_json(tmp_path / "out" / "dataset" / "café noir-21.json")["caption"] == "b"


# --- re-runs, hand edits, dry run, audio modes -------------------------------------------------------------------

def test_rerun_is_idempotent_and_hand_edits_survive_until_force(tmp_path, media, song_files):
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files), [annotation(1, FULL_RESULT)])])
    out = tmp_path / "out"
    args = (export, "--out", out, "--media-root", media)
    assert run_cli(*args)[0] == 0
    ds = out / "dataset"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in ds.iterdir()}
    assert run_cli(*args)[0] == 0
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in ds.iterdir()} == before  # nothing rewritten

    edited = read_json(ds / "song.json")
    edited["caption"] = "Fixed by a person"
    (ds / "song.json").write_text(json.dumps(edited))
    code, output = run_cli(*args)
    assert code == 1 and "task 1" in output and "song.json" in output and "--force" in output
    assert read_json(ds / "song.json")["caption"] == "Fixed by a person"
    report = read_json(out / "conversion_report.json")
    assert report["problems"] == [{"task_id": 1, "status": "kept", "reason": report["problems"][0]["reason"]}]
    # the hand edit flows into the dataset files
    assert read_json(out / "acestep_dataset.json")["samples"][0]["caption"] == "Fixed by a person"
    # still protected on the next run
    assert run_cli(*args)[0] == 1 and read_json(ds / "song.json")["caption"] == "Fixed by a person"

    code, output = run_cli(*args, "--force")
    assert code == 0, output
    assert read_json(ds / "song.json")["caption"].startswith("A bright pop song")


def test_a_file_we_never_wrote_is_not_overwritten(tmp_path, media, song_files):
    ds = tmp_path / "out" / "dataset"
    ds.mkdir(parents=True)
    (ds / "song.txt").write_text("my own lyrics\n")
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files), [annotation(1, FULL_RESULT)])])
    code, _ = run_cli(export, "--out", tmp_path / "out", "--media-root", media)
    assert code == 1 and (ds / "song.txt").read_text() == "my own lyrics\n"
    assert (ds / "song.json").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, media, song_files):
    export = write_export(tmp_path / "e.json", [
        task(1, upload(".wav", song_files), [annotation(1, FULL_RESULT)]),
        task(2, upload(".mp3", song_files), [annotation(2, [], cancelled=True)])])
    code, output = run_cli(export, "--out", tmp_path / "out", "--media-root", media, "--dry-run")
    assert code == 1
    assert "task 1: dataset/song.wav (copy from" in output and "sidecar new; lyrics new" in output
    assert "skipped: task 2" in output and "would convert 1 of 2 tasks" in output
    assert not (tmp_path / "out").exists()


def test_audio_link_and_none(tmp_path, media, song_files):
    result = [*region("r1", 0.0, 30.0, "Verse"), text("caption", "c")]
    result[0]["original_length"] = 21.5  # Label Studio stores the audio length with audio regions
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files), [annotation(1, result)])])
    assert run_cli(export, "--out", tmp_path / "l", "--media-root", media, "--audio", "link")[0] == 0
    link = tmp_path / "l" / "dataset" / "song.wav"
    assert link.is_symlink() and link.resolve() == (media / "upload" / "1" / Path(upload(".wav", song_files)).name)

    assert run_cli(export, "--out", tmp_path / "n", "--audio", "none")[0] == 0  # no media needed
    ds = tmp_path / "n" / "dataset"
    assert not (ds / "song.wav").exists()
    side = read_json(ds / "song.json")
    assert side["duration"] == 21.5 and side["music_analysis"]["timeline"][0]["end_sec"] == 21.5


def test_audio_downloaded_from_label_studio(tmp_path, song_files):
    from tests.test_media import LocalServer

    server = LocalServer()
    try:
        server.file("/data/upload/1/abcdef12-remote.ogg", song_files[".ogg"].read_bytes(), token="Token key")
        export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-remote.ogg",
                                                         [annotation(1, [text("caption", "c")])])])
        args = (export, "--out", tmp_path / "out", "--ls-url", server.url, "--ls-token", "key")
        code, output = run_cli(*args)
        assert code == 0, output
        audio = tmp_path / "out" / "dataset" / "remote.ogg"
        assert audio.read_bytes() == song_files[".ogg"].read_bytes()
        duration = read_json(tmp_path / "out" / "dataset" / "remote.json")["duration"]
        assert duration == pytest.approx(true_length(song_files), abs=0.1)
        downloads = len(server.requests)
        assert run_cli(*args)[0] == 0 and len(server.requests) == downloads  # a re-run downloads nothing
    finally:
        server.close()


def test_token_from_environment(tmp_path, song_files, monkeypatch):
    from tests.test_media import LocalServer

    server = LocalServer()
    try:
        server.file("/data/upload/1/abcdef12-env.wav", song_files[".wav"].read_bytes(), token="Token envkey")
        monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", "envkey")
        export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-env.wav",
                                                         [annotation(1, [text("caption", "c")])])])
        code, output = run_cli(export, "--out", tmp_path / "out")
        assert code == 0, output
    finally:
        server.close()


def test_python_m_converters_alias_and_plain_progress_lines(tmp_path, media, song_files):
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files),
                                                     [annotation(1, [text("caption", "c")])])])
    proc = subprocess.run([sys.executable, "-m", "converters", str(export), "--out", str(tmp_path / "out"),
                           "--media-root", str(media)], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert "progress: 100% of the export read" in proc.stderr  # not a terminal: plain lines, no bar
    assert "converted 1 of 1 tasks" in proc.stdout


def test_m4a_is_converted_with_a_warning_and_out_must_be_a_folder(tmp_path, media, song_files):
    export = write_export(tmp_path / "e.json", [task(1, upload(".m4a", song_files),
                                                     [annotation(1, [text("caption", "c")])])])
    assert run_cli(export, "--out", tmp_path / "out", "--media-root", media)[0] == 0
    warnings = read_json(tmp_path / "out" / "conversion_report.json")["warnings"][0]["warnings"]
    assert any(".m4a" in w and "scans only" in w for w in warnings)

    (tmp_path / "file").write_text("x")
    code, output = run_cli(export, "--out", tmp_path / "file")
    assert code == 2 and "not a folder" in output


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise(capsys):
    from converters.cli import _progress

    lines = []
    update = _progress(False, lines.append)(1000)
    for position in (50, 120, 480, 1000):
        update(position)
    assert lines == ["progress: 12% of the export read", "progress: 48% of the export read",
                     "progress: 100% of the export read"]

    bar = _progress(True, lines.append)(1000)
    bar(400)
    bar(1000)
    bar.close()
    err = capsys.readouterr().err
    assert "converting:" in err and "/1.00k" in err and "B/s" in err  # tqdm's bar over bytes of the export
    assert len(lines) == 3  # no plain lines while a bar shows


def test_a_renamed_audio_file_gets_a_new_stem_and_a_warning(tmp_path, media, song_files):
    first = write_export(tmp_path / "a.json", [task(1, upload(".wav", song_files),
                                                    [annotation(1, [text("caption", "c")])])])
    assert run_cli(first, "--out", tmp_path / "out", "--media-root", media)[0] == 0
    renamed = media / "upload" / "1" / "abcdef12-renamed.wav"
    renamed.write_bytes(song_files[".wav"].read_bytes())
    second = write_export(tmp_path / "b.json", [task(1, "/data/upload/1/abcdef12-renamed.wav",
                                                     [annotation(1, [text("caption", "c")])])])
    assert run_cli(second, "--out", tmp_path / "out", "--media-root", media)[0] == 0
    ds = tmp_path / "out" / "dataset"
    assert (ds / "renamed.json").exists() and (ds / "song.json").exists()  # nothing deleted
    warnings = read_json(tmp_path / "out" / "conversion_report.json")["warnings"][0]["warnings"]
    assert any("song.*" in w and "renamed.*" in w for w in warnings)


def test_leftovers_of_an_interrupted_run_are_cleared(tmp_path, media, song_files):
    work = tmp_path / "out" / ".ls-acestep"
    work.mkdir(parents=True)
    (work / ".manifest.abc123.jsonl").write_text('{"task_id": 99}\n')
    export = write_export(tmp_path / "e.json", [task(1, upload(".wav", song_files),
                                                     [annotation(1, [text("caption", "c")])])])
    assert run_cli(export, "--out", tmp_path / "out", "--media-root", media)[0] == 0
    assert sorted(p.name for p in work.iterdir()) == ["lock", "state.jsonl"]  # the folder's lock file stays
    rows = (tmp_path / "out" / "annotations_manifest.jsonl").read_text().splitlines()
    assert [json.loads(r)["task_id"] for r in rows] == [1]


@pytest.mark.timeout(60)
def test_a_huge_file_name_is_cut_once_to_a_file_name_that_fits():
    from converters.stems import stem_and_ext

    # before: cut one character at a time, re-encoding the whole name each time (hours for this one)
    stem, ext = stem_and_ext("/data/upload/1/abcdef12-" + "あ" * 2_000_000 + ".WAV")
    assert ext == ".wav" and stem == "あ" * 60 and len(stem.encode()) == 180
    assert stem_and_ext("/data/upload/1/" + "a" * 179 + "あ.wav")[0] == "a" * 179  # never half a character


def test_region_times_past_floats_range_are_no_times():
    from converters.results import song_from_results

    huge = 10 ** 400  # JSON integers have no size limit; float() of this one overflows
    result = [*region("a", 0.0, 5.0, "Verse"), *region("b", 5.0, 9.0, "Chorus")]
    result[1]["value"]["end"] = huge
    converted = song_from_results(result, 30.0)  # before: OverflowError, the task failed as "unexpected"
    # not a Chorus from 0 s to 5 s, as a missing end read as 0.0 (and swapped) made it
    assert [(r.section_label, r.start_sec, r.end_sec) for r in converted.song.regions] == [("Verse", 0.0, 5.0)]
    assert any("region b" in w and "not a time" in w for w in converted.warnings), converted.warnings
    del result[1]["value"]["start"]
    assert [r.id for r in song_from_results(result, 30.0).song.regions] == ["a"]


def test_a_kept_sidecar_with_nan_or_infinity_does_not_spoil_the_dataset_files(tmp_path):
    export = write_export(tmp_path / "e.json", [task(1, "/data/upload/1/abcdef12-song.wav",
                                                     [annotation(1, [text("caption", "c")])])])
    out = tmp_path / "out"
    args = (export, "--out", out, "--audio", "none")
    assert run_cli(*args)[0] == 0
    sidecar = out / "dataset" / "song.json"
    sidecar.write_text(sidecar.read_text().replace('"caption": "c"', '"caption": "edited", "duration": NaN, '
                                                   '"bpm": 1e400'))
    code, output = run_cli(*args)  # before: the task failed ("unexpected ValueError": int(NaN))

    def no_constant(name):
        raise AssertionError(f"{name} in the dataset file")

    assert code == 1 and "kept" in output, output
    warnings = read_json(out / "conversion_report.json")["warnings"]
    assert any("NaN/Infinity" in w for row in warnings for w in row["warnings"]), warnings
    assert "NaN" in sidecar.read_text()  # the hand edit stays
    samples = json.loads((out / "acestep_dataset.json").read_text(), parse_constant=no_constant)["samples"]
    assert [s["caption"] for s in samples] == ["c"]  # the export's values
