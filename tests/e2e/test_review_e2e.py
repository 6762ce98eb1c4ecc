"""The review loop and the dataset report against a real Label Studio: predictions of two model versions posted
through the API, annotations made from them with known changes (one with its parent_prediction, one without,
as annotations made through the API often are), ``ls-acestep review --project`` reading the project through the
API and finding exactly those changes field by field, the export converted and ``ls-acestep report`` run on the
converted folder. Both pages open in headless Chromium (Debian's, driven by Playwright) without a console error;
their screenshots go to build/e2e/ and, with LS_ACESTEP_UPDATE_SCREENSHOTS=1, to docs/screenshots/."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from .servers import REPO, create_project, run_cli, snapshot_export, upload_files
from .test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser]

BUILD = REPO / "build" / "e2e"
DOCS = REPO / "docs" / "screenshots"
V1, V2 = "ls-acestep-v1", "ls-acestep-v2"


def item(rid: str, name: str, kind: str, value: dict) -> dict:
    return {"id": rid, "from_name": name, "to_name": "audio", "type": kind, "value": value}


def region(rid: str, start: float, end: float, label: str, notes: str = "", lyrics: str = "") -> list[dict]:
    times = {"start": start, "end": end, "channel": 0}
    out = [item(rid, "section", "labels", {**times, "labels": [label]})]
    if notes:
        out.append(item(rid, "segment_notes", "textarea", {**times, "text": [notes]}))
    if lyrics:
        out.append(item(rid, "segment_lyrics", "textarea", {**times, "text": [lyrics]}))
    return out


def prediction_result(keyscale: str = "G major") -> list[dict]:
    """What a model predicted for the 20 s test song (sections at 0, 8 and 16 s)."""
    return [
        *region("r1", 0.0, 8.0, "Verse", "soft piano chords over a light kick"),
        *region("r2", 8.0, 16.0, "Chorus", "drums and bass enter, the piano doubles the melody"),
        *region("r3", 16.0, 20.5, "Verse", "the opening piano figure returns"),
        item("cap", "caption", "textarea", {"text": ["Bright instrumental pop in G major with piano and drums."]}),
        item("gen", "genre", "textarea", {"text": ["pop\ninstrumental pop"]}),
        item("bpm", "bpm", "number", {"number": 120}),
        item("key", "keyscale", "choices", {"choices": [keyscale]}),
        item("sig", "timesignature", "choices", {"choices": ["4"]}),
        item("lang", "vocal_language", "choices", {"choices": ["instrumental"]}),
    ]


def edited(result: list[dict], edit: str) -> list[dict]:
    """The annotator's known changes, one set per task."""
    result = copy.deepcopy(result)
    by = {(i["id"], i["from_name"]): i for i in result}
    if edit == "rework":  # boundary +0.75 s, r2 relabelled, r1's notes and the caption rewritten, key changed
        for rid, end in (("r1", "end"), ("r2", "start")):
            for name in ("section", "segment_notes"):
                by[(rid, name)]["value"][end] = 8.75
        by[("r2", "section")]["value"]["labels"] = ["Bridge"]
        by[("r1", "segment_notes")]["value"]["text"] = ["HUMAN: fingerpicked guitar, no kick yet"]
        by[("cap", "caption")]["value"]["text"] = ["HUMAN: a gentle guitar piece that blooms into a band."]
        by[("key", "keyscale")]["value"]["choices"] = ["E minor"]
    elif edit == "words":  # lyrics typed into r2, the language set, the BPM nudged within 1
        result += region("r2", 8.0, 16.0, "Chorus", lyrics="walking down the empty road")[1:]
        by[("lang", "vocal_language")]["value"]["choices"] = ["en"]
        by[("bpm", "bpm")]["value"]["number"] = 121
    elif edit == "outro":  # r3 deleted and redrawn over the same span as an Outro
        result = [i for i in result if i["id"] != "r3"]
        result += region("r4", 16.0, 20.5, "Outro", "piano alone, fades out")
    return result


# the fields each edit changes (field_changes > 0), and the exact measures review must report
EXPECTED = {
    "rework": {"fields": {"boundaries", "labels", "segment_notes", "caption", "keyscale"}, "paired_by":
               "parent_prediction", "hit": {"0.5": 0.5, "3.0": 1.0}, "shift": 0.375, "added": 0, "deleted": 0,
               "relabelled": 1, "notes": (3, 2 / 3), "choices": {"bpm": "accepted", "keyscale": "changed",
                                                                 "timesignature": "accepted",
                                                                 "vocal_language": "accepted"}},
    "words": {"fields": {"lyrics", "vocal_language"}, "paired_by": "newest older prediction",
              "hit": {"0.5": 1.0, "3.0": 1.0}, "shift": 0.0, "added": 0, "deleted": 0, "relabelled": 0,
              "notes": (3, 1.0), "wer": 1.0, "choices": {"bpm": "accepted", "keyscale": "accepted",
                                                          "timesignature": "accepted", "vocal_language": "changed"}},
    "outro": {"fields": {"labels"}, "paired_by": "parent_prediction", "hit": {"0.5": 1.0, "3.0": 1.0},
              "shift": 0.0, "added": 1, "deleted": 1, "relabelled": 0, "notes": (2, 1.0),
              "choices": {"bpm": "accepted", "keyscale": "accepted", "timesignature": "accepted",
                          "vocal_language": "accepted"}},
}
LEAD_TIMES = {"rework": 95.0, "words": 40.0, "outro": 25.0}
SCORES = {"rework": 0.2, "words": 0.5, "outro": 0.8}  # v1's scores: the most reworked song scored lowest


@pytest.fixture(scope="module")
def reviewed_project(label_studio, song_files):
    """(project id, {edit: task id}): three songs with v1 predictions, annotated with known edits, then v2
    predictions (keyscale "E minor") posted after the annotations."""
    client = label_studio.client()
    project_id = create_project(label_studio, "review loop")
    task_ids = upload_files(label_studio, project_id, [song_files[s] for s in (".wav", ".flac", ".mp3", ".ogg")])
    tasks = dict(zip(EXPECTED, task_ids))  # the fourth song stays unannotated, with a prediction only
    client.predictions.create(task=task_ids[3], result=prediction_result(), score=0.1, model_version=V1)
    for edit, task_id in tasks.items():
        predicted = prediction_result()
        p = client.predictions.create(task=task_id, result=predicted, score=SCORES[edit], model_version=V1)
        parent = None if edit == "words" else p.id  # "words": made without parent_prediction
        client.annotations.create(id=task_id, result=edited(predicted, edit), lead_time=LEAD_TIMES[edit],
                                  was_cancelled=False, ground_truth=False, parent_prediction=parent)
    for task_id in tasks.values():
        client.predictions.create(task=task_id, result=prediction_result("E minor"), score=0.6, model_version=V2)
    return project_id, tasks


def open_page(page_path: Path, screenshot: Path, height: int) -> tuple[list[str], str]:
    """Open a local page in headless Chromium, with the network cut off; returns (console errors and page errors,
    the visible text) and saves a screenshot of the top ``height`` pixels."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            images = page.locator("img")
            assert images.count() >= 3
            for i in range(images.count()):  # every plot decoded and drawn
                assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
            text = page.inner_text("body")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True,
                            clip={"x": 0, "y": 0, "width": 1400, "height": height})
        finally:
            browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    return errors, text


def keep_screenshot(path: Path) -> None:
    assert path.stat().st_size > 20_000
    if os.environ.get("LS_ACESTEP_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)


def test_review_finds_exactly_the_known_changes(label_studio, reviewed_project, tmp_path):
    project_id, tasks = reviewed_project
    out = tmp_path / "review"
    run = run_cli("review", "--project", str(project_id), "--ls-url", label_studio.url, "--ls-token",
                  label_studio.token, "--out", str(out), cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads((out / "review.json").read_text())
    # only the annotated tasks are downloaded: the unannotated one has nothing to compare
    assert doc["counts"]["tasks"] == 3 and doc["counts"]["compared"] == 3 and not doc["problems"]
    rows = {r["task_id"]: r for r in doc["tasks"]}
    for edit, task_id in tasks.items():
        row, want = rows[task_id], EXPECTED[edit]
        assert row["model_version"] == V1 and row["paired_by"] == want["paired_by"], edit
        assert {f for f, share in row["fields"].items() if share > 0} == want["fields"], edit
        regions = row["regions"]
        assert regions["hit_rate"] == pytest.approx(want["hit"]), edit
        assert regions["mean_shift"] == pytest.approx(want["shift"], abs=1e-3), edit
        assert (regions["added"], regions["deleted"], regions["relabelled"]) == \
            (want["added"], want["deleted"], want["relabelled"]), edit
        notes = row["texts"]["segment_notes"]
        assert (notes["compared"], notes["kept"]) == (want["notes"][0], pytest.approx(want["notes"][1], abs=1e-3)), edit
        assert {k: c["outcome"] for k, c in row["choices"].items()} == want["choices"], edit
        assert row["lyrics"] == (None if "wer" not in want else pytest.approx(
            {"wer": want["wer"], "kept": False, "predicted_words": 0, "final_words": 5, "unit": "word"})), edit
        assert row["lead_time"] == LEAD_TIMES[edit] and row["score"] == SCORES[edit]
        assert row["link"] == f"{label_studio.url}/projects/{project_id}/data?task={task_id}"
    assert rows[tasks["rework"]]["texts"]["caption"]["kept"] == 0.0
    assert rows[tasks["rework"]]["amount"] == max(r["amount"] for r in rows.values())
    # v1's scores ranked the work: the lowest score went to the most changed song
    assert doc["correlations"][V1]["score_vs_change"]["rho"] < 0

    errors, text = open_page(out / "review.html", BUILD / "review-page.png", 1872)
    assert errors == []
    assert V1 in text and "Tasks changed most" in text and "keyscale: G major → E minor" in text
    keep_screenshot(BUILD / "review-page.png")


def test_two_versions_on_the_same_songs_in_one_command(label_studio, reviewed_project, tmp_path):
    project_id, tasks = reviewed_project
    run = run_cli("review", "--project", str(project_id), "--ls-url", label_studio.url, "--ls-token",
                  label_studio.token, "--compare", V1, "--compare", V2, "--out", str(tmp_path / "cmp"), cwd=tmp_path,
                  timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads((tmp_path / "cmp" / "review.json").read_text())
    assert doc["mode"] == "versions"
    assert {v: s["annotations"] for v, s in doc["versions"].items()} == {V1: 3, V2: 3}
    # v2 said "E minor": right where the annotator changed the key, wrong on the two songs left in G major
    assert doc["versions"][V1]["choices"]["keyscale"]["accepted"] == 2
    assert doc["versions"][V2]["choices"]["keyscale"]["accepted"] == 1


def test_report_on_the_converted_folder(label_studio, reviewed_project, tmp_path):
    project_id, tasks = reviewed_project
    export = snapshot_export(label_studio, project_id, tmp_path / "export.json")
    dataset = tmp_path / "dataset-out"
    run = run_cli("convert", str(export), "--out", str(dataset), "--ls-url", label_studio.url, "--ls-token",
                  label_studio.token, cwd=tmp_path, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr  # 1: the unannotated song is skipped
    run = run_cli("report", str(dataset), "--jobs", "2", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads((tmp_path / "dataset-out-report" / "report.json").read_text())
    assert doc["counts"]["songs"] == 3 and doc["counts"]["with_caption"] == 3
    assert doc["counts"]["with_timeline"] == 3 and doc["counts"]["measured"] == 3
    songs = sorted(doc["songs"], key=lambda s: s["name"])
    assert {s["keyscale"] for s in songs} == {"G major", "E minor"}  # the annotators' keys, as ACE-Step reads them
    assert sum(s["has_lyrics"] for s in songs) == 1  # the "words" song
    # the three uploads are one song in three encodings: every pair is a near-duplicate
    assert len(doc["duplicates"]) == 3

    errors, text = open_page(tmp_path / "dataset-out-report" / "report.html", BUILD / "report-page.png", 2000)
    assert errors == []
    assert "Timelines" in text and "Near-duplicate songs" in text
    keep_screenshot(BUILD / "report-page.png")
