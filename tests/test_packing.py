"""Packed windows: neighbouring regions share one model window of at most 30 s, the model is asked about each
part inside it, and every answer lands on its own region at song time.

Checks the plan (every region covered once, no window over 30 s or across silence, few windows on the section
lengths of real songs), the packed prompt, the parser (other key names, part numbers out of order, fewer parts
than asked, prose, cut-off JSON) and the route through ``SongModel`` (notes on the right regions, missing parts
reported and not filled in)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from label_config import shipped_config
from ml_backend.analysis.music import MusicAnalysis, Section
from ml_backend.describe.prompt import (
    DEFAULT_PACKED_PROMPT, describe_answer, fill_prompt, packed_prompt, parse_packed_output,
)
from ml_backend.describe.types import WindowDescription, WindowRequest
from ml_backend.describe.windows import MAX_WINDOW_SECONDS, MIN_PART_SECONDS, plan_regions, plan_windows
from ml_backend.model import SongJob, SongModel
from ml_backend.prediction.predictions import parse_config
from ml_backend.settings import Settings

# Section lengths (seconds) the analysis found in three Debian game soundtracks (wesnoth-1.16-music: battle.ogg,
# heroes_rite.ogg, northerners.ogg; 744 s in all): the test needs their shape, not the audio.
REAL_SECTION_LENGTHS = [
    [8.2, 28.8, 11.1, 10.3, 40.4, 25.2, 20.6, 7.0, 14.3, 35.6, 6.1, 34.0, 8.4, 14.0, 16.0, 25.1, 9.7, 3.5],
    [7.9, 10.2, 14.6, 13.8, 9.1, 7.2, 14.6, 10.4, 13.9, 35.8, 12.7, 11.9, 26.9, 8.1, 8.3, 9.4, 3.3],
    [8.8, 7.4, 19.7, 8.0, 9.1, 8.4, 19.4, 18.6, 13.0, 9.4, 39.0, 13.8, 6.2, 12.3, 14.9],
]


def _analysis(lengths: list[float], silent: set[int] = frozenset()) -> MusicAnalysis:
    sections, t = [], 0.0
    for i, length in enumerate(lengths):
        sections.append(Section(round(t, 3), round(t + length, 3), "ABCD"[i % 4], "Silence" if i in silent else ""))
        t += length
    return MusicAnalysis(duration=round(t, 3), bpm=120.0, beats=[], keyscale="C major", key_confidence=1.0,
                         timesignature="4", timesignature_confident=True, sections=sections)


def _coverage(windows, regions) -> dict[int, list[tuple[float, float]]]:
    by_region: dict[int, list[tuple[float, float]]] = {}
    for w in windows:
        assert 0 < w.end - w.start <= MAX_WINDOW_SECONDS + 1e-9
        assert w.parts[0].start == w.start and w.parts[-1].end == w.end
        assert all(a.end == b.start and a.region < b.region for a, b in zip(w.parts, w.parts[1:]))
        for p in w.parts:
            by_region.setdefault(p.region, []).append((p.start, p.end))
    return by_region


@pytest.mark.parametrize("lengths", REAL_SECTION_LENGTHS)
def test_every_region_is_covered_once_by_its_parts(lengths):
    analysis = _analysis(lengths)
    regions = plan_regions(analysis, "structure")
    windows = plan_windows(regions)
    by_region = _coverage(windows, regions)
    assert sorted(by_region) == list(range(len(regions)))
    for index, spans in by_region.items():
        assert spans[0][0] == regions[index].start and spans[-1][1] == regions[index].end
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # the pieces tile the region, no overlap
        if len(spans) > 1:  # a region cut between windows leaves pieces worth describing
            assert min(b - a for a, b in spans) >= MIN_PART_SECONDS - 1e-6


def test_real_section_lengths_give_few_windows_per_minute():
    windows = minutes = 0.0
    for lengths in REAL_SECTION_LENGTHS:
        analysis = _analysis(lengths)
        regions = plan_regions(analysis, "structure")
        windows += len(plan_windows(regions))
        minutes += analysis.duration / 60
        assert len(plan_windows(regions)) < len(plan_windows(regions, pack=False))
    assert windows / minutes <= 2.3  # the original pipeline's 30 s windows with 2 s overlap: 2.14 per minute


def test_silence_is_never_inside_a_window_and_a_lone_long_region_is_split_evenly():
    analysis = _analysis([10.0, 8.0, 6.0, 63.0], silent={1})
    regions = plan_regions(analysis, "structure")
    windows = plan_windows(regions)
    by_region = _coverage(windows, regions)
    assert 1 not in by_region
    assert all(not (w.start < 18.0 and w.end > 10.0) for w in windows)
    assert by_region[0] == [(0.0, 10.0)]
    # 6 s + 63 s after the silence: 69 s in three windows of 23 s, the short region inside the first
    assert [round(w.end - w.start, 3) for w in windows[1:]] == [23.0, 23.0, 23.0]
    assert [p.region for p in windows[1].parts] == [2, 3]


def test_fixed_overlapping_regions_are_not_packed():
    analysis = _analysis([40.0, 50.0, 30.0])
    regions = plan_regions(analysis, "fixed", 30.0, 2.0)
    assert plan_windows(regions) == plan_windows(regions, pack=False)


# ------------------------------------------------------------------------------------------------ the prompt

def test_packed_prompt_lists_each_part_with_its_span_in_the_window():
    text = fill_prompt(DEFAULT_PACKED_PROMPT, 60.0, 87.5, [(60.0, 72.25), (72.25, 80.0), (80.0, 87.5)])
    assert "27.5-second excerpt" in text and "holds 3 consecutive parts" in text
    assert "- Part 1: 0 to 12.2 s\n- Part 2: 12.2 to 20 s\n- Part 3: 20 to 27.5 s" in text
    assert "{" + "part_list}" not in text and "{" + "window_seconds}" not in text
    custom = packed_prompt(Settings(analysis_prompt="Describe {window_seconds} s as JSON with summary."))
    filled = fill_prompt(custom, 0.0, 20.0, [(0.0, 8.0), (8.0, 20.0)])
    assert filled.startswith("Describe 20 s as JSON with summary.") and "- Part 2: 8 to 20 s" in filled
    assert packed_prompt(Settings()) == DEFAULT_PACKED_PROMPT


# ------------------------------------------------------------------------------------------------ the parser

PARTS = [(60.0, 72.0), (72.0, 80.0), (80.0, 88.0)]  # song seconds of a window 60-88


def _part(n: int, label: str, summary: str, moment: float | None = None) -> dict:
    item = {"part": n, "section_label": label, "summary": summary}
    if moment is not None:
        item["notable_moments"] = [{"time_sec": moment, "description": f"event {n}"}]
    return item


def test_a_full_packed_answer_lands_on_each_part_with_song_times():
    answer = json.dumps({
        "genre": ["folk"], "instruments": ["flute", "harp"], "vocal_language": "none",
        "parts": [_part(1, "Intro", "Solo flute.", 3.0), _part(2, "Verse", "Harp joins.", 14.0),
                  _part(3, "Chorus", "Full band.", 2.0)],  # 2 s lies in part 1: clamped to part 3's start
    })
    window = parse_packed_output(answer, 60.0, 88.0, PARTS)
    assert window.ok and not window.error and len(window.parts) == 3
    first, second, third = window.parts
    assert [d.section_label for d in window.parts] == ["Intro", "Verse", "Chorus"]
    assert [d.summary for d in window.parts] == ["Solo flute.", "Harp joins.", "Full band."]
    assert first.notable_moments == [(63.0, "event 1")] and second.notable_moments == [(74.0, "event 2")]
    assert third.notable_moments == [(80.0, "event 3")]
    assert first.genres == ["folk"] and first.instruments == ["flute", "harp"]  # facts of the window: once
    assert second.genres == [] and third.instruments == []
    assert all(d.vocal_language == "instrumental" or d.vocal_language for d in window.parts)


def test_part_numbers_out_of_order_and_other_key_names():
    answer = json.dumps({"style": "ambient", "regions": [
        {"index": 3, "section": "Outro", "description": "Fades."},
        {"index": 1, "section": "Intro", "description": "Pads."},
        {"index": 2, "section": "Bridge", "description": "Drums stop."},
    ]})
    window = parse_packed_output(answer, 60.0, 88.0, PARTS)
    assert [d.section_label for d in window.parts] == ["Intro", "Bridge", "Outro"]
    assert [d.summary for d in window.parts] == ["Pads.", "Drums stop.", "Fades."]
    assert window.parts[0].genres == ["ambient"]
    keyed = json.dumps({"Part 2": {"summary": "Second."}, "Part 1": {"summary": "First."},
                        "Part 3": {"summary": "Third."}})
    assert [d.summary for d in parse_packed_output(keyed, 60.0, 88.0, PARTS).parts] == ["First.", "Second.", "Third."]
    bare = "```json\n" + json.dumps([{"summary": "a b"}, {"summary": "c d"}, {"summary": "e f"}]) + "\n```"
    assert [d.summary for d in parse_packed_output(bare, 60.0, 88.0, PARTS).parts] == ["a b", "c d", "e f"]


def test_fewer_parts_than_asked_are_reported_not_invented():
    answer = json.dumps({"genre": ["rock"], "parts": [_part(1, "Intro", "Guitar."), _part(3, "Chorus", "Loud.")]})
    window = parse_packed_output(answer, 60.0, 88.0, PARTS)
    first, second, third = window.parts
    assert first.ok and third.ok and first.summary == "Guitar." and third.summary == "Loud."
    assert not second.ok and second.summary == "" and second.section_label == ""
    assert "part 2 (72.0-80.0 s) not described" in second.error and "2 of 3" in second.error
    assert window.ok and "part 2" in window.error
    # unnumbered: in order, the missing ones are the last
    short = json.dumps({"parts": [{"summary": "One."}]})
    parts = parse_packed_output(short, 60.0, 88.0, PARTS).parts
    assert parts[0].summary == "One." and not parts[1].ok and not parts[2].ok


def test_an_answer_about_the_whole_excerpt_describes_no_part():
    answer = json.dumps({"section_label": "Chorus", "summary": "Everything at once.", "genre": ["pop"]})
    window = parse_packed_output(answer, 60.0, 88.0, PARTS)
    assert not window.ok and all(not d.ok and d.summary == "" for d in window.parts)
    assert "as a whole" in window.parts[0].error


def test_cut_off_answer_keeps_complete_parts_and_fields():
    answer = json.dumps({"genre": ["jazz"], "instruments": ["sax"],
                         "parts": [_part(1, "Intro", "Sax alone.", 1.0), _part(2, "Verse", "Band enters.")]})
    cut = answer[:answer.index("Band enters") + len("Band en")]
    window = parse_packed_output(cut, 60.0, 88.0, PARTS)
    first, second, third = window.parts
    assert first.ok and first.summary == "Sax alone." and first.notable_moments == [(61.0, "event 1")]
    assert first.genres == ["jazz"] and first.instruments == ["sax"]
    assert second.ok and second.summary == "Band en" and "cut off" in second.error
    assert not third.ok and "cut off before it" in third.error


def test_prose_with_part_headings_and_without():
    prose = ("Part 1: A quiet piano intro with soft pads.\n"
             "Part 2 (8 s): The drums come in and the bass drives the groove.\n"
             "Part 3 - Strings swell into a big ending.")
    window = parse_packed_output(prose, 60.0, 88.0, PARTS)
    assert [d.ok for d in window.parts] == [True, True, True]
    assert window.parts[1].summary.startswith("The drums come in")
    assert window.parts[2].summary.startswith("Strings swell")
    plain = parse_packed_output("A calm piece with piano and strings throughout.", 60.0, 88.0, PARTS)
    assert not plain.ok and all("one by one" in d.error for d in plain.parts)
    garbage = parse_packed_output("\x05\ufffd\ufffd K@", 60.0, 88.0, PARTS)
    assert not garbage.ok and len(garbage.parts) == 3


def test_describe_answer_uses_the_packed_parser_only_for_packed_requests():
    audio = np.zeros(16000, np.float32)
    single = WindowRequest(audio=audio, start=0.0, end=1.0, prompt="x")
    assert describe_answer('{"summary": "One window only."}', single).parts == []
    packed = WindowRequest(audio=audio, start=0.0, end=1.0, prompt="x", parts=((0.0, 0.5), (0.5, 1.0)))
    assert len(describe_answer('{"parts": [{"summary": "a b c"}]}', packed).parts) == 2
    assert WindowDescription.failed("boom").for_parts(2)[1].error == "boom"


# ------------------------------------------------------------------------------------------------ through the model

class ScriptedEngine:
    """Answers every window from its request with the REAL parser: each part's summary names its song span,
    parts listed in reverse order with their numbers; the part named in ``skip`` (song start second) is left
    out of the answer, as a model might."""

    name = "scripted"
    model_id = "scripted"

    def __init__(self, skip: float | None = None):
        self.skip = skip
        self.requests: list[WindowRequest] = []

    def parameters(self) -> dict:
        return {}

    def describe_windows(self, requests):
        self.requests += requests
        out = []
        for req in requests:
            spans = req.parts or ((req.start, req.end),)
            items = [{"part": n, "summary": f"Region from {a:.1f} to {b:.1f} seconds.",
                      "notable_moments": [{"time_sec": a - req.start + 1.0, "description": f"mark {a:.1f}"}]}
                     for n, (a, b) in enumerate(spans, 1) if a != self.skip]
            text = json.dumps({"genre": ["test"], "parts": items[::-1]}) if req.parts else json.dumps(items[0])
            out.append(describe_answer(text, req))
        return out

    def summarize(self, text_prompt):
        return None


def _job(model: SongModel, lengths: list[float]) -> SongJob:
    analysis = _analysis(lengths)
    regions = plan_regions(analysis, "structure")
    windows = plan_windows(regions, pack=model.settings.pack_windows)
    requests = [WindowRequest(audio=np.zeros(int((w.end - w.start) * 100), np.float32), start=w.start, end=w.end,
                              prompt=model.packed_prompt if len(w.parts) > 1 else model.prompt,
                              parts=tuple((p.start, p.end) for p in w.parts) if len(w.parts) > 1 else ())
                for w in windows]
    return SongJob(index=0, task_id=7, key="k", analysis=analysis, regions=regions, windows=windows,
                   requests=requests)


def _region_notes(prediction: dict) -> dict[tuple[float, float], str]:
    notes = {}
    for item in prediction["result"]:
        value = item["value"]
        if "text" in value and "start" in value:
            notes[(round(value["start"], 1), round(value["end"], 1))] = value["text"][0]
    return notes


@pytest.mark.parametrize("lengths", REAL_SECTION_LENGTHS[:2])
def test_each_region_gets_its_own_notes_through_the_model(tmp_path, lengths):
    model = SongModel(Settings(engine="dsp", model_dir=tmp_path))
    model._engine = engine = ScriptedEngine()
    job = _job(model, lengths)
    assert any(r.parts for r in job.requests)
    targets = parse_config(shipped_config())
    results = [None]
    model._complete([job], ("Intro", "Verse", "Chorus"), targets, results)
    notes = _region_notes(results[0].prediction)
    assert len(notes) == len(job.regions)
    for region in job.regions:
        text = notes[(round(region.start, 1), round(region.end, 1))]
        # the region's own pieces, in time order, and nobody else's
        pieces = [f"Region from {p.start:.1f} to {p.end:.1f} seconds." for w in job.windows for p in w.parts
                  if job.regions[p.region] is region]
        assert text.startswith(" ".join(pieces))
        assert text.count("Region from") == len(pieces)
        assert f"At {int(round(region.start + 1.0)) // 60}:" in text  # its moment, shifted back to song time
    assert results[0].failure == "" and model.cache.get("k") is not None
    assert len(engine.requests) == len(job.windows) < len(job.regions)


def test_a_part_the_model_leaves_out_is_reported_and_not_cached(tmp_path, caplog):
    model = SongModel(Settings(engine="dsp", model_dir=tmp_path))
    job = _job(model, REAL_SECTION_LENGTHS[0])
    packed = next(w for w in job.windows if len(w.parts) > 1)
    missing = packed.parts[1]
    model._engine = ScriptedEngine(skip=missing.start)
    results = [None]
    with caplog.at_level("WARNING"):
        model._complete([job], ("Intro", "Verse"), parse_config(shipped_config()), results)
    notes = _region_notes(results[0].prediction)
    region = job.regions[missing.region]
    own = notes[(round(region.start, 1), round(region.end, 1))]
    assert f"from {missing.start:.1f}" not in own  # nothing invented for the part left out
    assert "region parts not described" in caplog.text and "not described" in caplog.text
    assert model.cache.get("k") is None  # predicted again next time


def test_the_openai_engine_asks_about_each_part_and_parses_the_packed_answer():
    """ENGINE=openai (vLLM): the packed prompt with the part list goes out beside the window's audio, and the
    answer comes back per part (a stand-in server scripts the answer)."""
    from ml_backend.describe.engines.openai_engine import OpenAIEngine
    from tests.openai_standin import OpenAIStandIn, completion

    answer = json.dumps({"genre": ["folk"], "parts": [_part(2, "Verse", "Harp joins."), _part(1, "Intro", "Flute.")]})
    with OpenAIStandIn(lambda body, n: (200, completion(answer), 0)) as server:
        engine = OpenAIEngine(server.url + "/v1", "qwen", max_retries=0)
        audio = np.zeros(16000 * 20, np.float32)
        req = WindowRequest(audio=audio, start=60.0, end=80.0, prompt=DEFAULT_PACKED_PROMPT,
                            parts=((60.0, 72.0), (72.0, 80.0)))
        (window,) = engine.describe_windows([req])
        text = server.bodies[0]["messages"][0]["content"][1]["text"]
    assert "holds 2 consecutive parts" in text and "- Part 1: 0 to 12 s\n- Part 2: 12 to 20 s" in text
    assert [d.summary for d in window.parts] == ["Flute.", "Harp joins."]
    assert window.parts[0].genres == ["folk"] and window.parts[1].section_label == "Verse"
