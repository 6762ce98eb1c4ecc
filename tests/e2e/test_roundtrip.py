"""The whole round trip against a real Label Studio: upload songs in several formats, connect the backend (tiny
offline Qwen2-Audio under gunicorn), retrieve predictions through the Data Manager action, annotate as a person
would, export a snapshot, convert with ``ls-acestep convert`` (audio downloaded through the API) and find the human
edits, not the model's, in the sidecars and lyrics files."""

from __future__ import annotations

import copy
import json

import pytest

from label_config import names as n

from .servers import (connect_backend, run_cli, create_project, snapshot_export, task_predictions, upload_files,
                       wait_until)

pytestmark = pytest.mark.labelstudio

FORMATS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")  # what Label Studio's uploader accepts of our format set


def by_id(result: list[dict]) -> dict[str, dict[str, dict]]:
    """Region id -> {from_name: item} for items that sit on the timeline."""
    out: dict[str, dict[str, dict]] = {}
    for item in result:
        if "start" in item.get("value", {}):
            out.setdefault(item["id"], {})[item["from_name"]] = item
    return out


def song_field(result: list[dict], name: str) -> dict | None:
    return next((i for i in result if i["from_name"] == name and "start" not in i.get("value", {})), None)


@pytest.fixture(scope="module")
def predicted_project(label_studio, tiny_backend, song_files):
    """A project whose songs got their predictions through the Data Manager action."""
    project_id = create_project(label_studio, "round trip")
    task_ids = upload_files(label_studio, project_id, [song_files[s] for s in FORMATS])
    assert len(task_ids) == len(FORMATS)
    connect_backend(label_studio, project_id, tiny_backend)
    r = label_studio.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
                         json={"selectedItems": {"all": True, "excluded": []}})
    assert r.status_code == 200, f"retrieve_tasks_predictions: HTTP {r.status_code} {r.text}"
    wait_until(lambda: all(task_predictions(label_studio, t) for t in task_ids), 120,
               "a prediction on every task")
    return project_id, task_ids


def test_predictions_are_stored_as_one_region_each_with_song_fields(label_studio, tiny_backend, predicted_project):
    project_id, task_ids = predicted_project
    version = tiny_backend.health()["model_version"]
    for task_id in task_ids:
        predictions = task_predictions(label_studio, task_id)
        assert len(predictions) == 1, f"task {task_id}: {len(predictions)} predictions"
        p = predictions[0]
        assert p.model_version == version
        regions = by_id(p.result)
        assert len(regions) >= 2, f"task {task_id}: a 20 s song with 3 sections got {len(regions)} region(s)"
        for rid, items in regions.items():
            section = items[n.SECTION]  # every timeline id is a labelled section...
            assert section["type"] == "labels" and section["to_name"] == n.AUDIO
            assert len(section["value"]["labels"]) == 1
            notes = items.get(n.SEGMENT_NOTES)  # ...and its text shares the id and the times
            if notes is not None:
                assert notes["type"] == "textarea"
                assert (notes["value"]["start"], notes["value"]["end"]) == \
                    (section["value"]["start"], section["value"]["end"])
        starts = sorted(i[n.SECTION]["value"]["start"] for i in regions.values())
        ends = sorted(i[n.SECTION]["value"]["end"] for i in regions.values())
        assert starts[0] == pytest.approx(0.0, abs=1.0) and ends[-1] == pytest.approx(20.0, abs=1.5)
        # (the tiny model's random weights describe no window, so per-region texts come from the annotator below)
        caption = song_field(p.result, n.CAPTION)
        assert caption is not None and caption["value"]["text"][0].strip()
        bpm = song_field(p.result, n.BPM)
        assert bpm is not None and 30 <= bpm["value"]["number"] <= 300
        assert song_field(p.result, n.KEYSCALE) is not None
    # Label Studio keeps the backend's model version for the project and shows these predictions in the task list
    listed = label_studio.api("GET", f"/api/tasks?project={project_id}&fields=all").json()
    tasks = listed["tasks"] if isinstance(listed, dict) else listed
    assert all(t["total_predictions"] == 1 for t in tasks)


def test_retrieving_again_adds_no_second_prediction(label_studio, predicted_project):
    project_id, task_ids = predicted_project
    r = label_studio.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
                         json={"selectedItems": {"all": True, "excluded": []}})
    assert r.status_code == 200
    assert [len(task_predictions(label_studio, t)) for t in task_ids] == [1] * len(task_ids)


def human_edit(result: list[dict]) -> tuple[list[dict], dict]:
    """What an annotator does to a prediction: move the boundary between the first two regions, relabel the
    second, rewrite the first one's text, type lyrics for the second, rewrite the caption. Returns the new result
    and what to expect."""
    result = copy.deepcopy(result)
    regions = sorted(by_id(result).items(), key=lambda kv: kv[1][n.SECTION]["value"]["start"])
    (first_id, first), (second_id, second) = regions[0], regions[1]
    boundary = round(first[n.SECTION]["value"]["end"] + 0.75, 3)
    for item in first.values():
        item["value"]["end"] = boundary
    for item in second.values():
        item["value"]["start"] = boundary
    old_label = second[n.SECTION]["value"]["labels"][0]
    new_label = "Bridge" if old_label != "Bridge" else "Solo"
    second[n.SECTION]["value"]["labels"] = [new_label]
    notes = "HUMAN: fingerpicked guitar over a soft kick"
    if n.SEGMENT_NOTES in first:
        first[n.SEGMENT_NOTES]["value"]["text"] = [notes]
    else:
        result.append({"id": first_id, "from_name": n.SEGMENT_NOTES, "to_name": n.AUDIO, "type": "textarea",
                       "value": {"start": first[n.SECTION]["value"]["start"], "end": boundary, "channel": 0,
                                 "text": [notes]}})
    lyrics = "walking down the empty road\nsinging to the morning light"
    result = [i for i in result if not (i["id"] == second_id and i["from_name"] == n.SEGMENT_LYRICS)]
    result.append({"id": second_id, "from_name": n.SEGMENT_LYRICS, "to_name": n.AUDIO, "type": "textarea",
                   "value": {"start": boundary, "end": second[n.SECTION]["value"]["end"], "channel": 0,
                             "text": [lyrics]}})
    caption = "HUMAN caption: bright acoustic pop with a steady four-on-the-floor pulse"
    cap = song_field(result, n.CAPTION)
    cap["value"]["text"] = [caption]
    for item in result:
        item.pop("origin", None)
    expect = {"boundary": boundary, "label": new_label, "notes": notes, "lyrics": lyrics, "caption": caption}
    return result, expect


def test_annotation_export_convert_keeps_the_human_edits(label_studio, predicted_project, song_files, tmp_path):
    project_id, task_ids = predicted_project
    client = label_studio.client()
    task_id = task_ids[0]
    prediction = task_predictions(label_studio, task_id)[0]
    result, expect = human_edit(prediction.result)
    client.annotations.create(id=task_id, result=result, was_cancelled=False, ground_truth=False, lead_time=42.0)
    stored = client.annotations.list(id=task_id)
    assert len(stored) == 1
    regions = by_id(stored[0].result)  # Label Studio stores per-region texts under their region's id
    texts = {name for items in regions.values() for name in items if name != n.SECTION}
    assert texts == {n.SEGMENT_NOTES, n.SEGMENT_LYRICS}
    assert all(n.SECTION in items for items in regions.values())

    export = snapshot_export(label_studio, project_id, tmp_path / "export.json")
    exported = {t["id"]: t for t in json.loads(export.read_text())}
    assert set(exported) == set(task_ids)
    assert exported[task_id]["predictions"][0]["result"], "snapshot export without whole predictions"

    out = tmp_path / "dataset-out"
    run = run_cli("convert", str(export), "--out", str(out), "--ls-url", label_studio.url, "--ls-token",
                  label_studio.token, cwd=tmp_path)
    # only the annotated task converts (the others have predictions only): exit status 1 = some skipped
    assert run.returncode in (0, 1), run.stderr
    rows = [json.loads(line) for line in (out / "annotations_manifest.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["task_id"] == task_id)
    assert row["source"] == "annotation"
    audio = out / row["audio_path"]  # downloaded through the API: byte for byte what was uploaded
    assert audio.read_bytes() in {song_files[s].read_bytes() for s in FORMATS}
    sidecar = json.loads((out / row["sidecar_path"]).read_text())
    lyrics = (out / row["lyrics_path"]).read_text()
    assert sidecar["caption"] == expect["caption"]
    timeline = sidecar["music_analysis"]["timeline"]
    assert timeline[0]["end_sec"] == pytest.approx(expect["boundary"], abs=1e-3)
    assert timeline[0]["notes"] == expect["notes"]
    assert timeline[1]["start_sec"] == pytest.approx(expect["boundary"], abs=1e-3)
    assert timeline[1]["section_label"] == expect["label"]
    assert timeline[1]["lyrics"] == expect["lyrics"]
    assert lyrics == f"[{expect['label']}]\n{expect['lyrics']}\n"
    model_texts = {i["value"]["text"][0] for i in prediction.result if i["type"] == "textarea"}
    assert sidecar["caption"] not in model_texts and timeline[0]["notes"] not in model_texts
