"""Lyrics through a real Label Studio: a song with a voice (espeak-ng over rendered music) is uploaded, the backend
(gunicorn, ENGINE=dsp, LYRICS_ENGINE=openai against the scripted transcription server of tests/openai_standin.py)
pre-annotates it through the Data Manager action with ``segment_lyrics`` per region (sharing the region's id) and
the song's ``lyrics``; a person corrects them; ``ls-acestep convert`` writes the lyrics file with section tags from
the corrected text, not the model's."""

from __future__ import annotations

import copy
import json

import pytest

from label_config import names as n
from tests import voices
from tests.openai_standin import OpenAIStandIn
from tests.test_lyrics_openai import stitched_song_reply

from .servers import (connect_backend, create_project, run_cli, snapshot_export, task_predictions,
                      upload_files, wait_until)

pytestmark = [pytest.mark.labelstudio,
              pytest.mark.skipif(not voices.has_espeak(), reason="needs espeak-ng (apt-get install espeak-ng)")]


@pytest.fixture(scope="module")
def transcriber():
    with OpenAIStandIn(stitched_song_reply) as server:
        yield server


@pytest.fixture(scope="module")
def lyrics_backend(start_backend, transcriber):
    # fixed 10 s regions so that the scripted words land in known regions; one request at a time so that the
    # stand-in's n-th answer is the n-th chunk
    return start_backend("lyrics", ENGINE="dsp", LYRICS_ENGINE="openai", LYRICS_BASE_URL=transcriber.url,
                         LYRICS_MODEL_ID="whisper-1", MAX_CONCURRENCY="1", MAX_RETRIES="0",
                         SEGMENTATION="fixed", SEGMENT_SECONDS="10", OVERLAP_SECONDS="0", QUEUE_WORKERS="0")


@pytest.fixture(scope="module")
def predicted(label_studio, lyrics_backend, tmp_path_factory):
    song = voices.make_documents(tmp_path_factory.mktemp("voiced")) / "songs" / "voiced.wav"
    project_id = create_project(label_studio, "lyrics round trip")
    [task_id] = upload_files(label_studio, project_id, [song])
    connect_backend(label_studio, project_id, lyrics_backend)
    r = label_studio.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
                         json={"selectedItems": {"all": True, "excluded": []}})
    assert r.status_code == 200, f"retrieve_tasks_predictions: HTTP {r.status_code} {r.text}"
    wait_until(lambda: task_predictions(label_studio, task_id), 120, "a prediction on the task")
    return project_id, task_id


def items(result: list[dict], name: str) -> list[dict]:
    return [i for i in result if i["from_name"] == name]


def test_the_song_is_predicted_with_lyrics_per_region_and_song_lyrics(label_studio, lyrics_backend, predicted,
                                                                       transcriber):
    _, task_id = predicted
    [prediction] = task_predictions(label_studio, task_id)
    assert prediction.model_version == lyrics_backend.health()["model_version"]
    sections = {i["id"]: i["value"] for i in items(prediction.result, n.SECTION)}
    lyrics = {i["id"]: i["value"] for i in items(prediction.result, n.SEGMENT_LYRICS)}
    assert set(lyrics) == {"seg1", "seg2"} and set(lyrics) < set(sections)  # stored under the regions' ids
    for rid, value in lyrics.items():
        assert (value["start"], value["end"]) == (sections[rid]["start"], sections[rid]["end"])
    assert lyrics["seg1"]["text"] == ["hello my darling,"]
    [song] = items(prediction.result, n.LYRICS)
    first, second = sections["seg1"]["labels"][0], sections["seg2"]["labels"][0]
    assert song["value"]["text"][0].startswith(f"[{first}]\nhello my darling,\n\n[{second}]\n")
    assert items(prediction.result, n.VOCAL_LANGUAGE)[0]["value"]["choices"] == ["en"]
    assert len(transcriber.bodies) == 2  # the two voiced chunks, once: Label Studio stored the first answer


def corrected(result: list[dict], clear_song_lyrics: bool) -> tuple[list[dict], str]:
    """An annotator's correction: seg2's lines rewritten and relabelled Chorus; the song-level text either
    rewritten to match or cleared (then the converter assembles it from the regions). Returns the result and the
    lyrics file expected."""
    result = copy.deepcopy(result)
    for item in result:
        item.pop("origin", None)
        if item["id"] == "seg2" and item["from_name"] == n.SEGMENT_LYRICS:
            item["value"]["text"] = ["I am walking in the rain tonight\nsinging all the way back home"]
        if item["id"] == "seg2" and item["from_name"] == n.SECTION:
            item["value"]["labels"] = ["Chorus"]
    first = next(i for i in result if i["id"] == "seg1" and i["from_name"] == n.SECTION)["value"]["labels"][0]
    text = (f"[{first}]\nhello my darling,\n\n[Chorus]\nI am walking in the rain tonight\n"
            "singing all the way back home")
    song = next(i for i in result if i["from_name"] == n.LYRICS)
    if clear_song_lyrics:
        result.remove(song)
    else:
        song["value"]["text"] = [text]
    return result, text + "\n"


@pytest.mark.parametrize("clear_song_lyrics", [False, True])
def test_convert_writes_the_corrected_lyrics_with_section_tags(label_studio, predicted, tmp_path,
                                                              clear_song_lyrics):
    project_id, task_id = predicted
    client = label_studio.client()
    [prediction] = task_predictions(label_studio, task_id)
    result, expected = corrected(prediction.result, clear_song_lyrics)
    for old in client.annotations.list(id=task_id):  # one annotation per variant
        client.annotations.delete(id=old.id)
    client.annotations.create(id=task_id, result=result, was_cancelled=False, ground_truth=False, lead_time=30.0)

    export = snapshot_export(label_studio, project_id, tmp_path / "export.json")
    out = tmp_path / "dataset"
    run = run_cli("convert", str(export), "--out", str(out), "--ls-url", label_studio.url, "--ls-token",
                  label_studio.token, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    [row] = [json.loads(line) for line in (out / "annotations_manifest.jsonl").read_text().splitlines()]
    assert row["task_id"] == task_id and row["source"] == "annotation"
    assert (out / row["lyrics_path"]).read_text() == expected
    model_text = items(prediction.result, n.LYRICS)[0]["value"]["text"][0]
    assert model_text + "\n" != expected
    sidecar = json.loads((out / row["sidecar_path"]).read_text())
    assert sidecar["language"] == "en" and sidecar["is_instrumental"] is False
    timeline = sidecar["music_analysis"]["timeline"]
    assert timeline[1]["lyrics"] == "I am walking in the rain tonight\nsinging all the way back home"
