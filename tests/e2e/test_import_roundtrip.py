"""`ls-acestep import` against the real Label Studio, and the round trip: a converted folder is imported (audio
uploaded, one prediction per song), a person changes two fields and one region of one song, the project is
exported and converted again: every untouched field comes back identical, the edits come back as edited.
Re-running the import adds nothing; a folder under the local-files root is referenced, not uploaded."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from label_config import names as n

from .servers import create_project, run_cli, snapshot_export, task_predictions

pytestmark = pytest.mark.labelstudio

VERSION = "import-ls-acestep"


def _song(path: Path, seconds: float, seed: int) -> None:
    """A distinct, quiet noise clip (distinct content: the import recognises a song by its audio's hash)."""
    rng = np.random.default_rng(seed)
    soundfile.write(str(path), (rng.standard_normal(int(seconds * 8000)) * 0.05).astype("float32"), 8000)


def _result(*items) -> list:
    return [i for group in items for i in (group if isinstance(group, list) else [group])]


def region(rid, start, end, label, notes=None, lyrics=None):
    items = [{"id": rid, "from_name": n.SECTION, "to_name": n.AUDIO, "type": "labels",
              "value": {"start": start, "end": end, "channel": 0, "labels": [label]}}]
    for name, value in ((n.SEGMENT_NOTES, notes), (n.SEGMENT_LYRICS, lyrics)):
        if value is not None:
            items.append({"id": rid, "from_name": name, "to_name": n.AUDIO, "type": "textarea",
                          "value": {"start": start, "end": end, "channel": 0, "text": [value]}})
    return items


def field(name, kind, value):
    return {"id": f"f-{name}", "from_name": name, "to_name": n.AUDIO, "type": kind, "value": value}


def text(name, value):
    return field(name, "textarea", {"text": [value]})


def choice(name, value):
    return field(name, "choices", {"choices": [value]})


SONGS = {
    "vocal": _result(region("a", 0.0, 4.0, "Verse", "piano and voice", "morning light"),
                     region("b", 4.0, 8.0, "Chorus", "drums enter", "we rise\n(rise up)"),
                     region("c", 8.0, 12.0, "Outro", "piano alone"),
                     text(n.CAPTION, "warm piano pop, close female vocal"), field(n.BPM, "number", {"number": 112}),
                     choice(n.KEYSCALE, "G major"), choice(n.TIMESIGNATURE, "4"), choice(n.VOCAL_LANGUAGE, "en"),
                     text(n.GENRE, "piano pop\nsinger-songwriter"), text(n.INSTRUMENTS, "piano\ndrums")),
    "ambient": _result(region("a", 0.0, 12.0, "Intro", "slow pads"), text(n.CAPTION, "ambient drones"),
                       field(n.BPM, "number", {"number": 70}), choice(n.VOCAL_LANGUAGE, "instrumental")),
    "unsure": _result(text(n.CAPTION, "lo-fi beat, nobody said about vocals"), choice(n.KEYSCALE, "A minor")),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A folder made by `ls-acestep convert` from an export of three songs (12 s each)."""
    root = tmp_path_factory.mktemp("import-src")
    upload = root / "media" / "upload" / "1"
    upload.mkdir(parents=True)
    tasks = []
    for number, (name, result) in enumerate(SONGS.items(), 1):
        _song(upload / f"{number:08x}-{name}.wav", 12.0, number)
        tasks.append({"id": number, "data": {"audio": f"/data/upload/1/{number:08x}-{name}.wav"}, "predictions": [],
                      "annotations": [{"id": number, "result": result, "was_cancelled": False,
                                       "ground_truth": False, "completed_by": 1,
                                       "updated_at": "2026-12-01T00:00:00Z"}]})
    (root / "export.json").write_text(json.dumps(tasks))
    run = run_cli("convert", str(root / "export.json"), "--out", str(root / "out"), "--media-root",
              str(root / "media"), cwd=root)
    assert run.returncode == 0, run.stderr
    return root / "out" / "dataset"


def _sidecars(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("provenance")
        out[path.stem] = data
    return out


def test_import_round_trip_keeps_untouched_fields_and_brings_back_the_edits(label_studio, converted, tmp_path):
    client = label_studio.client()
    project = create_project(label_studio, "import round trip")
    args = ("import", str(converted), "--ls-url", label_studio.url, "--ls-token", label_studio.token,
            "--project", str(project))
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3 new task(s) (3 uploaded, 0 referenced as local files)" in first.stdout
    assert first.stderr.count("audio uploaded") == 3

    tasks = {t.data["audio"].rsplit("-", 1)[-1].rsplit(".", 1)[0]: t for t in client.tasks.list(project=project)}
    assert set(tasks) == set(SONGS)
    for name, task in tasks.items():
        predictions = task_predictions(label_studio, task.id)
        assert [p.model_version for p in predictions] == [VERSION], name

    again = run_cli(*args, cwd=tmp_path)  # nothing new: same tasks, same predictions
    assert again.returncode == 0, again.stderr
    assert "0 new task(s)" in again.stdout and "3 unchanged" in again.stdout
    assert len(list(client.tasks.list(project=project))) == 3
    assert all(len(task_predictions(label_studio, t.id)) == 1 for t in tasks.values())

    # a person edits the vocal song: caption and bpm (two fields), the outro region's label and notes (one region)
    vocal = tasks["vocal"]
    result = copy.deepcopy(task_predictions(label_studio, vocal.id)[0].result)
    for item in result:
        if item["from_name"] == n.CAPTION:
            item["value"]["text"] = ["HUMAN: bright piano pop"]
        elif item["from_name"] == n.BPM:
            item["value"]["number"] = 124
    outro = next(i["id"] for i in result if i["from_name"] == n.SECTION and i["value"]["labels"] == ["Outro"])
    for item in result:
        if item["id"] == outro:
            if item["from_name"] == n.SECTION:
                item["value"]["labels"] = ["Breakdown"]
            elif item["from_name"] == n.SEGMENT_NOTES:
                item["value"]["text"] = ["HUMAN: piano and tape hiss"]
    client.annotations.create(id=vocal.id, result=result, was_cancelled=False, ground_truth=False, lead_time=9.0)

    export = snapshot_export(label_studio, project, tmp_path / "export.json")
    out = tmp_path / "again"
    run = run_cli("convert", str(export), "--out", str(out), "--use-predictions", "--ls-url", label_studio.url,
              "--ls-token", label_studio.token, cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout

    before, after = _sidecars(converted), _sidecars(out / "dataset")
    assert set(after) == set(before)
    assert after["ambient"] == before["ambient"] and after["unsure"] == before["unsure"]
    edited, original = after["vocal"], before["vocal"]
    assert edited["caption"] == "HUMAN: bright piano pop" and edited["bpm"] == 124
    timeline = edited["music_analysis"]["timeline"]
    assert (timeline[2]["section_label"], timeline[2]["notes"]) == ("Breakdown", "HUMAN: piano and tape hiss")
    # everything else as it was
    timeline[2].update(section_label="Outro", notes="piano alone")
    edited.update(caption=original["caption"], bpm=original["bpm"])
    assert edited == original
    for name in SONGS:  # lyrics files too, byte for byte (none for the songs without words)
        for suffix in (".txt", ".lyrics.txt"):
            assert (converted / f"{name}{suffix}").exists() == (out / "dataset" / f"{name}{suffix}").exists()
    assert (out / "dataset" / "vocal.txt").read_bytes() == (converted / "vocal.txt").read_bytes()


def test_a_folder_under_the_local_files_root_is_referenced_not_uploaded(label_studio, converted, tmp_path):
    folder = label_studio.document_root / "import-me"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(converted, folder)
    (folder / "broken.wav").write_bytes(b"RIFF")
    (folder / "broken.json").write_text("{not json")
    project = create_project(label_studio, "import local files")
    run = run_cli("import", str(folder), "--ls-url", label_studio.url, "--ls-token", label_studio.token,
              "--project", str(project), "--document-root", str(label_studio.document_root), cwd=tmp_path)
    assert run.returncode == 1, run.stderr  # the broken song is reported and skipped; the others are imported
    assert "broken.wav: broken.json cannot be read" in run.stderr
    assert "3 new task(s) (0 uploaded, 3 referenced as local files)" in run.stdout and "1 skipped" in run.stdout
    tasks = list(label_studio.client().tasks.list(project=project))
    assert len(tasks) == 3
    assert all(t.data["audio"].startswith("/data/local-files/?d=import-me/") for t in tasks)
    assert all(len(task_predictions(label_studio, t.id)) == 1 for t in tasks)


def test_an_acestep_dataset_json_imports_with_its_own_model_version(label_studio, converted, tmp_path):
    dataset = converted.parent / "acestep_dataset.json"
    project = create_project(label_studio, "import dataset json")
    args = ("import", str(dataset), "--ls-url", label_studio.url, "--ls-token", label_studio.token,
            "--project", str(project))
    run = run_cli(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    tasks = list(label_studio.client().tasks.list(project=project))
    assert len(tasks) == 3
    predictions = {t.id: task_predictions(label_studio, t.id) for t in tasks}
    assert all([p.model_version for p in ps] == ["import-acestep-dataset"] for ps in predictions.values())
    vocal = next(t for t in tasks if t.data["audio"].endswith("-vocal.wav"))
    result = predictions[vocal.id][0].result
    caption = next(i for i in result if i["from_name"] == n.CAPTION)
    assert caption["value"]["text"] == ["warm piano pop, close female vocal"]
    lyrics = next(i for i in result if i["from_name"] == n.LYRICS)  # no times in a dataset JSON: song-level
    assert lyrics["value"]["text"] == ["[Verse]\nmorning light\n\n[Chorus]\nwe rise\n(rise up)"]
    assert "0 new task(s)" in run_cli(*args, cwd=tmp_path).stdout  # a re-run adds nothing
