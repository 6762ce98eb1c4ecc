"""The labeling page in a real browser: a song pre-annotated on import (webhook, queue, worker) opens in Label
Studio's editor with its waveform, the predicted regions and a region's text; a screenshot is saved.

The texts come from ENGINE=openai talking to a stand-in for a vLLM server (vLLM cannot run here; the tiny offline
model's random weights write no readable text). The stand-in answers the way vLLM does and records the requests,
which are checked. Everything else is real: Label Studio, gunicorn, the queue, headless Chromium (Debian's, driven
by Playwright; no browser is downloaded).

The screenshots go to build/e2e/ (labeling-page.png; song-fields.png, the key and language dropdowns); with
LS_ACESTEP_UPDATE_SCREENSHOTS=1 they also replace the ones the docs show, in docs/screenshots/."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from tests.openai_standin import OpenAIStandIn, completion, has_audio

from .servers import REPO, connect_backend, create_project, task_predictions, upload_files, wait_until

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOT = REPO / "build" / "e2e" / "labeling-page.png"
README_SCREENSHOT = REPO / "docs" / "screenshots" / "labeling-page.png"
FIELDS_SCREENSHOT = REPO / "build" / "e2e" / "song-fields.png"  # the song-level fields: key and language dropdowns
DOCS_FIELDS_SCREENSHOT = REPO / "docs" / "screenshots" / "song-fields.png"
MODEL_ID = "Qwen/Qwen2-Audio-7B-Instruct"

WINDOWS = [  # what the stand-in "hears", one answer per window in turn
    ("Intro", "Soft piano chords and a light kick drum open the song; the groove is relaxed.",
     ["pop"], ["felt piano", "kick drum"]),
    ("Verse", "A brighter strummed guitar joins the piano and the drums settle into a steady four-on-the-floor.",
     ["pop", "indie pop"], ["acoustic guitar", "piano", "drum kit"]),
    ("Outro", "The opening piano figure returns alone and the song winds down.", ["pop"], ["felt piano"]),
]
CAPTION = "Bright instrumental pop in G major at 120 BPM: felt piano, strummed acoustic guitar and a steady kick."


def asked_parts(body: dict) -> int | None:
    """How many parts a packed window's prompt asks the model to describe; None for a one-region prompt."""
    text = " ".join(p.get("text", "") for m in body.get("messages", []) if isinstance(m.get("content"), list)
                    for p in m["content"] if isinstance(p, dict))
    found = re.search(r"for each of the (\d+) parts|holds (\d+) consecutive parts", text)
    return int(next(g for g in found.groups() if g)) if found else None


def vllm_replies():
    """A ``reply`` for the stand-in that answers like vLLM serving Qwen2-Audio: for a request with audio a JSON
    description (one object per part the packed prompt asks for; the WINDOWS texts in turn), a caption for a
    text-only one."""
    described: list[int] = []
    lock = threading.Lock()

    def reply(body: dict, _n: int):
        if not has_audio(body):
            return 200, completion(CAPTION, model=body.get("model")), 0
        packed, parts = asked_parts(body), []
        for number in range(1, (packed or 1) + 1):
            with lock:
                described.append(1)
                n = len(described)
            label, summary, genres, instruments = WINDOWS[(n - 1) % len(WINDOWS)]
            parts.append({"part": number, "section_label": label, "summary": summary, "notable_moments": []})
        answer = {"genre": genres, "instruments": instruments, "effects": [], "vocal_characteristics": [],
                  "mix_notes": [], "vocal_language": "none"}
        answer.update(parts=parts) if packed else answer.update(parts[0])
        return 200, completion(json.dumps(answer), model=body.get("model"), n=n), 0

    return reply


@pytest.fixture(scope="module")
def prelabeled_task(label_studio, start_backend, song_files):
    """(project id, task id, prediction, stand-in): one song imported into a project with the openai-engine
    backend connected, pre-annotated by the worker."""
    stand_in = OpenAIStandIn(vllm_replies())
    backend = start_backend("openai", ENGINE="openai", OPENAI_BASE_URL=stand_in.url, MODEL_ID=MODEL_ID,
                            MAX_RETRIES="0", REQUEST_TIMEOUT="30",
                            MAX_CONCURRENCY="1")  # windows in time order, so the answers follow the song
    project_id = create_project(label_studio, "labeling page")
    connect_backend(label_studio, project_id, backend)
    (task_id,) = upload_files(label_studio, project_id, [song_files[".wav"]])
    wait_until(lambda: task_predictions(label_studio, task_id), 120, "the song to be pre-annotated on import")
    yield project_id, task_id, task_predictions(label_studio, task_id)[0], stand_in
    backend.stop()
    stand_in.close()


def test_the_engine_sent_each_window_as_audio_and_the_texts_came_back(prelabeled_task):
    _, _, prediction, stand_in = prelabeled_task
    windows = [b for b in stand_in.bodies if has_audio(b)]
    assert windows and all(b["model"] == MODEL_ID for b in stand_in.bodies)
    assert any(asked_parts(b) for b in windows)  # the default packs neighbouring regions into one window
    for body in windows:
        parts = body["messages"][-1]["content"]
        audio = next(p for p in parts if p["type"] in ("input_audio", "audio_url"))
        data = audio["input_audio"]["data"] if audio["type"] == "input_audio" else audio["audio_url"]["url"]
        assert len(data) > 1000  # a base64 WAV of the window
        assert any(p["type"] == "text" and '"section_label"' in p["text"] for p in parts)
    notes = [i for i in prediction.result if i["from_name"] == "segment_notes"]
    assert notes and all(any(w[1] in i["value"]["text"][0] for w in WINDOWS) for i in notes)
    sections = {i["id"]: i["value"] for i in prediction.result if i["from_name"] == "section"}
    for item in notes:  # each text sits on its region: same id, same times (one region in the editor)
        region = sections[item["id"]]
        assert (item["value"]["start"], item["value"]["end"]) == (region["start"], region["end"])


def test_labeling_page_shows_waveform_regions_and_region_text(label_studio, prelabeled_task):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); the browser check needs Debian's Chromium")
    from playwright.sync_api import sync_playwright

    project_id, task_id, prediction, _ = prelabeled_task
    labels = [i["value"]["labels"][0] for i in sorted(
        (i for i in prediction.result if i["from_name"] == "section"), key=lambda i: i["value"]["start"])]
    first_note = next(i["value"]["text"][0] for i in sorted(
        (i for i in prediction.result if i["from_name"] == "segment_notes"), key=lambda i: i["value"]["start"]))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{label_studio.url}/user/login/")
            page.fill("input[name=email]", label_studio.username)
            page.fill("input[name=password]", label_studio.password)
            page.locator("button[type=submit]").first.click()
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)

            page.goto(f"{label_studio.url}/projects/{project_id}/data?task={task_id}")
            waveform = page.locator("canvas").first  # the audio editor draws the waveform and regions on a canvas
            waveform.wait_for(state="visible", timeout=90_000)
            box = waveform.bounding_box()
            assert box["width"] > 300 and box["height"] > 50
            regions = page.locator(".lsf-outliner-item, [class*='outliner-item']")
            wait_until(lambda: regions.count() >= len(labels), 60, "the predicted regions in the Regions panel")
            listed = [regions.nth(i).inner_text() for i in range(regions.count())]
            for label in labels:
                assert any(label in text for text in listed), (label, listed)
            caption = next(i["value"]["text"][0] for i in prediction.result if i["from_name"] == "caption")
            assert page.get_by_text(caption[:40]).count() >= 1

            regions.first.click()  # select the first region: its per-region text box appears
            page.get_by_text(first_note[:40]).first.wait_for(state="visible", timeout=30_000)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            # the 24 keys and the languages are two dropdowns, not rows of checkboxes: closed, no key but the
            # predicted one shows; opened, the list offers every key
            dropdowns = page.locator(".lsf-choices_layout_select")
            assert dropdowns.count() == 2, "keyscale and vocal_language should render as dropdowns"
            dropdowns.first.scroll_into_view_if_needed()
            other_key = next(k for k in ("Db major", "B minor") if k != predicted(prediction, "keyscale"))
            assert not page.get_by_text(other_key, exact=True).first.is_visible()
            page.screenshot(path=str(FIELDS_SCREENSHOT))
            dropdowns.first.click()
            page.get_by_text(other_key, exact=True).first.wait_for(state="visible", timeout=10_000)
            page.keyboard.press("Escape")
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 20_000
    if os.environ.get("LS_ACESTEP_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SCREENSHOT, README_SCREENSHOT)
        shutil.copyfile(FIELDS_SCREENSHOT, DOCS_FIELDS_SCREENSHOT)


def predicted(prediction, name: str) -> str | None:
    """The value the prediction chose for a Choices control, if any."""
    return next((i["value"]["choices"][0] for i in prediction.result if i["from_name"] == name), None)
