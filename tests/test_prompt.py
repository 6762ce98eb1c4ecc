"""The analysis prompt and the tolerant parsing of model answers, with fixed strings."""

from __future__ import annotations

import json
import random

import pytest

from label_config.vocabulary import SECTION_LABELS
from ml_backend.describe.prompt import (
    DEFAULT_ANALYSIS_PROMPT, analysis_prompt, as_list, looks_like_text, parse_seconds, parse_window_output,
    window_prompt,
)
from ml_backend.settings import Settings

ANSWER = {
    "section_label": "Chorus 2",
    "summary": "The full band enters with a big {sing-along} hook.",
    "genre": ["synth-pop", "dance"],
    "instruments": ["analog synth bass", "four-on-the-floor kick"],
    "effects": "sidechain pumping, autotune",
    "vocal_characteristics": ["female lead", "doubled harmonies"],
    "mix_notes": ["wide stereo pads"],
    "vocal_language": "English",
    "notable_moments": [{"time_sec": 4.5, "description": "drum fill"}, {"time_sec": 12, "description": "drop"}],
}


def test_default_prompt_names_every_key_and_the_window_length():
    text = window_prompt(analysis_prompt(Settings()), 27.5)
    for key in ANSWER:
        assert f'"{key}"' in text
    assert "27.5-second excerpt" in text and "between 0 and 27.5" in text
    assert "{window_seconds}" not in text
    assert "autotune" in text and "pitch correction" in text


def test_analysis_prompt_override_is_used_as_is():
    custom = "List the instruments as JSON."
    assert analysis_prompt(Settings(analysis_prompt=custom)) == custom
    assert analysis_prompt(Settings(analysis_prompt="   ")) == DEFAULT_ANALYSIS_PROMPT
    assert window_prompt(custom, 30.0) == custom
    assert window_prompt("Excerpt of {window_seconds} s", 30.0) == "Excerpt of 30 s"


def _check_full(desc, start):
    assert desc.ok and desc.error == ""
    assert desc.section_label == "Chorus"
    assert desc.summary == ANSWER["summary"]
    assert desc.genres == ["synth-pop", "dance"]
    assert desc.effects == ["sidechain pumping", "autotune"]  # a comma-separated string becomes a list
    assert desc.vocal_characteristics == ["female lead", "doubled harmonies"]
    assert desc.mix_notes == ["wide stereo pads"]
    assert desc.vocal_language == "en"
    assert desc.notable_moments == [(start + 4.5, "drum fill"), (start + 12.0, "drop")]


def test_plain_json():
    text = json.dumps(ANSWER)
    desc = parse_window_output(text, 60.0, 90.0)
    _check_full(desc, 60.0)
    assert desc.raw_text == text


def test_fenced_json_with_chatter_around_it():
    text = "Sure! Here is my analysis:\n```json\n" + json.dumps(ANSWER, indent=2) + "\n```\nHope this helps {:)}"
    _check_full(parse_window_output(text, 30.0, 60.0), 30.0)


def test_first_balanced_object_in_prose_with_braces():
    # Braces inside JSON strings and stray braces in the prose around the object must not confuse the matcher.
    text = "I hear {a lot} going on. " + json.dumps(ANSWER) + " {and more}"
    _check_full(parse_window_output(text, 0.0, 30.0), 0.0)


def test_trailing_comma_and_alias_keys():
    text = '{"section": "pre chorus", "description": "Tension builds.", "genres": ["edm",], "language": "none",}'
    desc = parse_window_output(text, 0.0, 20.0)
    assert desc.ok
    assert (desc.section_label, desc.summary, desc.genres, desc.vocal_language) == (
        "Pre-Chorus", "Tension builds.", ["edm"], "instrumental")


def test_truncated_json_keeps_the_complete_fields():
    text = '{"section_label": "Verse", "genre": ["indie", "folk"], "summary": "A quiet verse with fingerpicked gui'
    desc = parse_window_output(text, 10.0, 40.0)
    assert desc.ok
    assert desc.section_label == "Verse" and desc.genres == ["indie", "folk"]
    assert desc.summary.startswith("A quiet verse")
    assert "cut off" in desc.error


def test_prose_fallback_picks_up_labelled_lines():
    text = ("**Genre:** Blues rock; Southern rock\nInstruments: slide guitar, Hammond organ\nLanguage: English\n"
            "The band settles into a slow shuffle while the slide guitar answers the singer.")
    desc = parse_window_output(text, 0.0, 30.0)
    assert desc.ok
    assert desc.genres == ["Blues rock", "Southern rock"]
    assert desc.instruments == ["slide guitar", "Hammond organ"]
    assert desc.vocal_language == "en"
    assert desc.summary == "The band settles into a slow shuffle while the slide guitar answers the singer."


def test_plain_prose_becomes_the_summary():
    text = "A mellow lo-fi beat with dusty drums and a warm Rhodes piano."
    desc = parse_window_output(text, 0.0, 30.0)
    assert desc.ok and desc.summary == text and desc.genres == []


@pytest.mark.parametrize("start,end,moments,expected", [
    (60.0, 90.0, [{"time_sec": 45, "description": "after the end"}], [(90.0, "after the end")]),
    (60.0, 90.0, [{"time_sec": -3, "description": "before"}], [(60.0, "before")]),
    (60.0, 75.0, [{"time": "0:07", "description": "m:ss"}, {"timestamp": "3.5s", "event": "units"}],
     [(63.5, "units"), (67.0, "m:ss")]),
    (0.0, 30.0, [[2, "pair"], {"time_sec": "soon", "description": "no time"}, {"time_sec": 1}, "text"],
     [(2.0, "pair")]),
    (0.0, 30.0, "not a list", []),
])
def test_moment_times_are_clamped_into_the_window_and_shifted(start, end, moments, expected):
    desc = parse_window_output(json.dumps({"summary": "x y z", "notable_moments": moments}), start, end)
    assert desc.notable_moments == expected
    assert all(start <= t <= end for t, _ in desc.notable_moments)


def test_section_label_is_mapped_onto_the_allowed_labels():
    text = json.dumps({"section_label": "Refrain", "summary": "hook"})
    assert parse_window_output(text, 0, 30).section_label == "Chorus"
    assert parse_window_output(text, 0, 30, allowed_labels=("Part A", "Part B")).section_label == ""
    odd = json.dumps({"section_label": "Part B", "summary": "hook"})
    assert parse_window_output(odd, 0, 30, allowed_labels=("Part A", "Part B")).section_label == "Part B"
    unknown = json.dumps({"section_label": "kazoo interlude of doom", "summary": "x"})
    assert parse_window_output(unknown, 0, 30).section_label in ("",) + SECTION_LABELS


def test_lists_accept_strings_lists_and_junk():
    assert as_list("guitar, bass; drums\nkeys") == ["guitar", "bass", "drums", "keys"]
    assert as_list(["Guitar", "guitar", "", "none", None, 3, {"name": "sax"}]) == ["Guitar", "3", "sax"]
    assert as_list(None) == [] and as_list(42) == ["42"]
    assert len(as_list([f"item {i}" for i in range(50)])) == 12


def test_parse_seconds():
    assert [parse_seconds(v) for v in (12, "12.5", "12s", "1:02.5", "nan", float("inf"), True, None, "x")] == [
        12.0, 12.5, 12.0, 62.5, None, None, None, None, None]


@pytest.mark.parametrize("text", [
    "", "   ", "{", "}{", "```json\n{\"summary\": ", "[1, 2, 3]", "null", '{"summary": null}',
    "\x00\x01\x02\ufffd\ufffd", '{"genre": {"a": [1, {"b": null}]}, "notable_moments": {"x": 1}}',
    "{" * 5000 + "}" * 5000, '"just a string"', '{"vocal_language": ["English", "French"], "summary": 5}',
])
def test_odd_inputs_never_raise(text):
    desc = parse_window_output(text, 0.0, 30.0)
    assert desc.raw_text == text
    assert desc.ok or desc.error


def test_random_bytes_never_raise_and_are_not_taken_as_text():
    rng = random.Random(1234)
    for _ in range(300):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))).decode("utf-8", errors="replace")
        desc = parse_window_output(blob, 5.0, 35.0)
        assert isinstance(desc.summary, str)
        if not desc.ok:
            assert desc.error and desc.summary == ""
    assert not parse_window_output("s\ufffd\ufffd\x05K@[=\r\ufffd\ufffd", 0, 30).ok


def test_non_string_output_is_tolerated():
    assert not parse_window_output(None, 0, 30).ok
    assert parse_window_output(b"bytes".decode(), 0, 30).raw_text == "bytes"


def test_looks_like_text():
    assert looks_like_text("A warm, slow groove with brushed drums.")
    assert not looks_like_text("ok")
    assert not looks_like_text("\ufffd\ufffd ab cd ef \ufffd\ufffd\ufffd\ufffd")
    assert not looks_like_text("12 34 56 78 {} [] <> ## @@ ab cd ef")
