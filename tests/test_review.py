"""``ls-acestep review``: known edits between a prediction and an annotation are found field by field; annotations
are paired with the prediction they started from; bad tasks are reported, not fatal; the page is self-contained."""

from __future__ import annotations

import copy
import http.server
import json
import re
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from review.cli import review_command
from review.compare import ACCEPTED, ADDED, CHANGED, compare_results, lyrics_words, text_similarity
from review.pairs import OLDER, PARENT, task_pairs
from review.review_run import run_review
from tests.test_convert import region


def field(name: str, value) -> dict:
    kind = {"bpm": "number", "keyscale": "choices", "timesignature": "choices", "vocal_language": "choices"}.get(
        name, "textarea")
    key = {"number": "number", "choices": "choices", "textarea": "text"}[kind]
    return {"id": f"{name}-1", "from_name": name, "to_name": "audio", "type": kind,
            "value": {key: value if kind == "number" else [value]}}


PREDICTED = [
    *region("r1", 0.0, 10.0, "Intro", "soft piano and a hum"),
    *region("r2", 10.0, 20.0, "Verse", "drums enter with a bass line", "walking down the road"),
    *region("r3", 20.0, 30.0, "Chorus", "full band, bright synth lead"),
    field("caption", "A calm piano song that grows into a full band"),
    field("genre", "pop\nindie"),
    field("bpm", 120), field("keyscale", "C major"), field("timesignature", "4"),
]


def annotate(predicted: list[dict]) -> list[dict]:
    """What the annotator did: moved the r1/r2 boundary by 0.8 s, relabelled r2, rewrote r2's notes, deleted r3
    and drew r4 over its span, corrected one lyric word, kept the caption, changed the genre lines, nudged the BPM
    by 1, changed the key, typed "Am"-style spelling nowhere, and added the vocal language."""
    result = copy.deepcopy(predicted)
    for item in result:
        if item["id"] == "r1" and "start" in item["value"]:
            item["value"]["end"] = 10.8
        if item["id"] == "r2" and "start" in item["value"]:
            item["value"]["start"] = 10.8
        if item["id"] == "r2" and item["from_name"] == "section":
            item["value"]["labels"] = ["Pre-Chorus"]
        if item["id"] == "r2" and item["from_name"] == "segment_notes":
            item["value"]["text"] = ["drums and a walking bass line enter"]
        if item["id"] == "r2" and item["from_name"] == "segment_lyrics":
            item["value"]["text"] = ["walking down the street"]
        if item["from_name"] == "genre":
            item["value"]["text"] = ["pop\nfolk"]
        if item["from_name"] == "bpm":
            item["value"]["number"] = 121
        if item["from_name"] == "keyscale":
            item["value"]["choices"] = ["A minor"]
    result = [i for i in result if i["id"] != "r3"]
    result += region("r4", 20.0, 30.0, "Chorus", "full band, bright synth lead")
    result.append(field("vocal_language", "en"))
    return result


def test_known_edits_are_found_field_by_field():
    change = compare_results(PREDICTED, annotate(PREDICTED))
    r = change.regions
    assert (r.predicted, r.final, r.added, r.deleted, r.relabelled) == (3, 3, 1, 1, 1)
    # interior boundaries: predicted 10, 20; final 10.8, 20 -> one of two within 0.5 s, both within 3 s
    assert r.hit_rate["0.5"] == pytest.approx(0.5) and r.hit_rate["3.0"] == pytest.approx(1.0)
    assert r.mean_shift == pytest.approx(0.4)  # (0.8 + 0.0) / 2
    # 0.8 s of Intro became Pre-Chorus time and the 9.2 s of Verse became Pre-Chorus: (10 + 10) / 30 agree
    assert r.label_agreement == pytest.approx(20.0 / 30.0, abs=0.01)
    notes = change.texts["segment_notes"]
    assert notes.compared == 2 and notes.kept == pytest.approx(0.5)  # r1 kept, r2 rewritten (r3/r4 not paired)
    assert 0.3 < notes.similarity < 1.0
    assert change.texts["caption"].kept == 1.0 and change.texts["caption"].similarity == 1.0
    assert change.texts["genre"].kept == 0.0 and change.texts["genre"].similarity == pytest.approx(0.5)
    assert change.lyrics.wer == pytest.approx(0.25) and not change.lyrics.kept  # 1 of 4 words substituted
    assert {k: c.outcome for k, c in change.choices.items()} == {
        "bpm": ACCEPTED, "keyscale": CHANGED, "timesignature": ACCEPTED, "vocal_language": ADDED}
    assert 0.0 < change.amount < 1.0


def test_an_untouched_prediction_changes_nothing():
    change = compare_results(PREDICTED, copy.deepcopy(PREDICTED))
    assert change.amount == 0.0
    assert change.regions.hit_rate == {"0.5": 1.0, "3.0": 1.0} and change.regions.label_agreement == 1.0
    assert all(t.kept == 1.0 for t in change.texts.values())
    assert all(c.outcome == ACCEPTED for c in change.choices.values())


def test_values_are_compared_as_the_converter_normalises_them():
    predicted = [field("keyscale", "A minor"), field("bpm", 120), field("timesignature", "4")]
    final = [field("keyscale", "Am"), field("bpm", 123), field("timesignature", "4/4")]
    change = compare_results(predicted, final)
    assert change.choices["keyscale"].outcome == ACCEPTED  # "Am" is A minor
    assert change.choices["timesignature"].outcome == ACCEPTED
    assert change.choices["bpm"].outcome == CHANGED  # more than 1 BPM
    assert change.regions is None and change.lyrics is None


def test_lyrics_without_spaces_are_measured_by_character():
    from review.compare import compare_lyrics

    change = compare_lyrics("[Verse]\n我爱你中国", "[Verse]\n我爱你祖国")
    assert change.unit == "character" and change.wer == pytest.approx(0.2)  # one of five characters
    assert compare_lyrics("la la la", "la la").unit == "word"


def test_huge_texts_are_bounded():
    from review.compare import MAX_SHOWN_CHARACTERS, MAX_WORDS, words

    assert len(words("la " * 1_000_000)) == MAX_WORDS
    huge = [field("caption", "x y " * 1_000_000)]
    change = compare_results(huge, [field("caption", "x y")])
    assert len(change.texts["caption"].predicted) == MAX_SHOWN_CHARACTERS and change.texts["caption"].kept == 0.0


def test_text_measures():
    assert text_similarity("soft piano", "Soft piano!") == 1.0
    assert text_similarity("", "") == 1.0 and text_similarity("a b", "") == 0.0
    assert lyrics_words("[Verse]\nHello, world\n\n[Chorus]\nOh!") == "hello world oh"


def a_task(tid: int, predictions: list[dict], annotations: list[dict], project: int = 7) -> dict:
    return {"id": tid, "project": project, "data": {"audio": f"/data/upload/{project}/0123abcd-song{tid}.wav"},
            "predictions": predictions, "annotations": annotations}


def prediction(pid: int, result: list, version: str = "v1", score: float = 0.5,
               created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"id": pid, "result": result, "model_version": version, "score": score, "created_at": created}


def annotation(aid: int, result: list, parent=None, created: str = "2026-01-02T00:00:00Z", **extra) -> dict:
    return {"id": aid, "result": result, "was_cancelled": False, "ground_truth": False, "lead_time": 30.0,
            "created_at": created, "updated_at": created, "parent_prediction": parent, **extra}


def test_annotations_pair_with_their_parent_prediction_else_the_newest_older_one():
    old = prediction(1, PREDICTED, "v1", created="2026-01-01T00:00:00Z")
    new = prediction(2, PREDICTED, "v2", created="2026-01-03T00:00:00Z")
    task = a_task(5, [old, new], [
        annotation(10, PREDICTED, parent=2, created="2026-01-04T00:00:00Z"),
        annotation(11, PREDICTED, parent=None, created="2026-01-02T00:00:00Z"),  # before v2 existed
        annotation(12, [], parent=None),  # empty: not submitted
        annotation(13, PREDICTED, was_cancelled=True),  # skipped
        annotation(14, PREDICTED, parent=99),
    ])
    pairs, reasons = task_pairs(task)
    assert [(p.annotation["id"], p.prediction["id"], p.paired_by) for p in pairs] == [(10, 2, PARENT), (11, 1, OLDER)]
    assert reasons == ["annotation 14: its parent prediction 99 is not in the export (deleted, or empty: a failed "
                       "prediction)"]


def test_versions_are_compared_on_the_same_songs_against_the_final_annotation():
    both = a_task(1, [prediction(1, PREDICTED, "a"), prediction(2, annotate(PREDICTED), "b")],
                  [annotation(10, annotate(PREDICTED), parent=1)])
    only_a = a_task(2, [prediction(3, PREDICTED, "a")], [annotation(11, PREDICTED, parent=3)])
    pairs, reasons = task_pairs(both, ("a", "b"))
    assert [(p.model_version, p.prediction["id"], p.annotation["id"]) for p in pairs] == [("a", 1, 10), ("b", 2, 10)]
    assert task_pairs(only_a, ("a", "b")) == ([], ["no prediction of version b"])


@pytest.fixture
def export(tmp_path):
    """Six annotated tasks whose score foretells the change (low score, much changed), one with ids-only
    predictions, one that is not a task, one unannotated."""
    tasks = []
    for i in range(6):
        changed = i < 3
        tasks.append(a_task(i + 1, [prediction(100 + i, PREDICTED, score=0.1 * i)],
                            [annotation(200 + i, annotate(PREDICTED) if changed else PREDICTED, parent=100 + i,
                                        lead_time=60.0 - i)]))
    tasks.append(a_task(7, [1, 2], [annotation(300, PREDICTED)]))
    tasks.append("not a task")
    tasks.append(a_task(9, [prediction(109, PREDICTED)], []))
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_review_writes_json_and_a_self_contained_page(export, tmp_path):
    doc, json_path, html_path = run_review(export, tmp_path / "out", ls_url="http://ls.example:8080")
    assert json.loads(json_path.read_text()) == doc
    assert doc["counts"] == {"tasks": 9, "annotated_tasks": 7, "compared": 6, "not_compared": 2}
    assert {p["task_id"] for p in doc["problems"]} == {7, "#8"}
    assert "prediction ids only" in next(p["reason"] for p in doc["problems"] if p["task_id"] == 7)
    summary = doc["versions"]["v1"]
    assert summary["choices"]["keyscale"] == {"tasks": 6, "accepted": 3, "changed": 3, "added": 0, "removed": 0,
                                              "accepted_rate": 0.5}
    assert summary["regions"]["added"] == 3 and summary["regions"]["deleted"] == 3
    assert summary["lyrics"]["mean_wer"] == pytest.approx(0.125)
    rho = doc["correlations"]["v1"]["score_vs_change"]
    assert rho["n"] == 6 and rho["rho"] < -0.8  # the low scores were the changed songs
    row = doc["tasks"][0]
    assert row["link"] == "http://ls.example:8080/projects/7/data?task=1"
    assert row["paired_by"] == PARENT and row["lead_time"] == 60.0
    assert row["audio"] == "song1.wav"  # without Label Studio's upload prefix, as the dataset names it

    page = html_path.read_text()
    assert "http://ls.example:8080/projects/7/data?task=1" in page
    # nothing fetched: no scripts, styles or images from anywhere but the page itself
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", page)
    assert page.count("data:image/svg+xml;base64,") >= 3


def test_cli_exit_codes_and_messages(export, tmp_path):
    runner = CliRunner()
    result = runner.invoke(review_command, [str(export), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1, result.output  # written, but two tasks could not be compared
    assert "compared 6 annotation(s) of 9 task(s)" in result.output
    assert (tmp_path / "r" / "review.html").is_file()

    result = runner.invoke(review_command, ["--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "pass either an EXPORT file or --project N" in result.output

    json_min = tmp_path / "min.json"
    json_min.write_text(json.dumps([{"audio": "x.wav", "annotation_id": 1, "lead_time": 3}]))
    result = runner.invoke(review_command, [str(json_min), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "JSON_MIN" in result.output and "Traceback" not in result.output


def test_compare_two_versions_in_one_command(tmp_path):
    tasks = [a_task(i, [prediction(10 * i, PREDICTED, "prompt-a"), prediction(10 * i + 1, annotate(PREDICTED),
                                                                              "prompt-b")],
                    [annotation(100 + i, annotate(PREDICTED), parent=10 * i)]) for i in range(1, 4)]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    result = CliRunner().invoke(review_command, [str(export), "--compare", "prompt-a", "--compare", "prompt-b",
                                                 "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "cmp" / "review.json").read_text())
    assert doc["mode"] == "versions" and set(doc["versions"]) == {"prompt-a", "prompt-b"}
    assert doc["versions"]["prompt-b"]["mean_change"] == 0.0 < doc["versions"]["prompt-a"]["mean_change"]
    assert "Model versions side by side" in (tmp_path / "cmp" / "review.html").read_text()


def test_unreachable_label_studio_is_a_message(tmp_path):
    result = CliRunner().invoke(review_command, ["--project", "3", "--ls-url", "http://127.0.0.1:9", "--ls-token",
                                                 "abc", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "cannot reach Label Studio" in result.output
    assert "Traceback" not in result.output


def test_an_export_without_annotations_still_gives_a_page(tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([a_task(1, [prediction(1, PREDICTED)], [])]))
    doc, _, html_path = run_review(export, tmp_path / "out")
    assert doc["counts"]["compared"] == 0 and doc["versions"] == {}
    assert "Tasks changed most" in html_path.read_text()


class _BrokenLabelStudio(http.server.BaseHTTPRequestHandler):
    """Speaks Label Studio's export API shapes, then fails one way: ``mode`` "html" answers the snapshot request
    with a proxy's page, "cut" sends a snapshot shorter than its Content-Length and closes the connection."""

    mode = "cut"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, body: bytes, kind: str = "application/json", length: int | None = None):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "html":
            return self._send(b"<html>login</html>", "text/html")
        self._send(b'{"id": 5}')

    def do_GET(self):  # noqa: N802
        if "/download" in self.path:
            self._send(b'[{"id": 1, "data": {', length=100_000)
            self.close_connection = True
        else:
            self._send(b'{"id": 5, "status": "completed"}')


@pytest.mark.parametrize("mode,message", [("html", "not a Label Studio answer"), ("cut", "broke off")])
def test_a_broken_label_studio_answer_is_a_message(tmp_path, mode, message):
    handler = type("Handler", (_BrokenLabelStudio,), {"mode": mode})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = CliRunner().invoke(review_command, [
            "--project", "3", "--ls-url", f"http://127.0.0.1:{server.server_port}", "--ls-token", "abc",
            "--out", str(tmp_path / "r")])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 2 and message in result.output, result.output
    assert "cannot write" not in result.output and isinstance(result.exception, SystemExit)


@pytest.mark.timeout(60)
def test_a_region_ending_a_billion_seconds_in_is_measured_on_a_bounded_grid():
    from review.compare import MAX_FRAMES, label_agreement

    far = [*region("r1", 0.0, 10.0, "Intro"), *region("r2", 10.0, 1e9, "Verse")]
    change = compare_results(PREDICTED, far)  # before: np.arange asked for 10 billion frames
    # the prediction covers 30 s of the billion: almost every (coarse) frame disagrees
    assert 0.0 <= change.regions.label_agreement < 1e-3 and change.regions.deleted == 1
    est = np.array([[0.0, 10.0], [10.0, 20.0]])
    assert label_agreement(est, ["a", "b"], est, ["a", "b"]) == 1.0 and MAX_FRAMES * 0.1 > 20


def test_a_score_or_lead_time_past_floats_range_is_no_number(tmp_path):
    """An export's integers have no size limit: 1 followed by 400 zeros was an OverflowError traceback."""
    task = a_task(1, [prediction(1, PREDICTED, score=1)], [annotation(2, annotate(PREDICTED), parent=1)])
    text = json.dumps([task]).replace('"score": 1', '"score": 1' + "0" * 400).replace(
        '"lead_time": 30.0', '"lead_time": -1' + "0" * 400)
    export = tmp_path / "export.json"
    export.write_text(text)
    doc, _, _ = run_review(export, tmp_path / "out")
    assert doc["counts"]["compared"] == 1 and doc["problems"] == []
    assert doc["tasks"][0]["score"] is None and doc["tasks"][0]["lead_time"] is None
