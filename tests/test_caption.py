"""The song caption: the prompt, the deterministic fallback, and validation of what the engine writes."""

from __future__ import annotations

import json

import pytest

from ml_backend.analysis.music import MusicAnalysis
from ml_backend.describe.caption import (
    MAX_CAPTION_WORDS, caption_prompt, clean_caption, fallback_caption, song_caption, tempo_feel, top_items,
    truncate_words,
)
from ml_backend.describe.types import WindowDescription
from ml_backend.describe.engines.dsp_engine import DspEngine


def make_analysis(bpm=None, keyscale=None, duration=200.0) -> MusicAnalysis:
    """An analysis with only the fields the caption reads (bpm, keyscale, duration) set meaningfully."""
    return MusicAnalysis(duration=duration, bpm=bpm, beats=[], keyscale=keyscale, key_confidence=0.0,
                         timesignature="4", timesignature_confident=False, sections=[])


WINDOWS = [
    WindowDescription(section_label="Intro", summary="Filtered synth pads fade in over a soft kick.",
                      genres=["synth-pop"], instruments=["synth pads", "kick drum"], effects=["low-pass filter"]),
    WindowDescription(section_label="Verse", summary="A breathy female voice sings over a pulsing bass.",
                      genres=["Synth-pop", "electropop"], instruments=["synth bass", "Synth pads"],
                      vocal_characteristics=["breathy female lead"], vocal_language="en"),
    WindowDescription(ok=False, error="out of memory", summary=""),
    WindowDescription(section_label="Chorus", summary="The chorus opens up with wide stacked harmonies.",
                      genres=["synth-pop"], instruments=["synth pads", "claps"],
                      vocal_characteristics=["stacked harmonies"], effects=["sidechain pumping"]),
]


class FixedEngine:
    """An engine whose text-only answer is fixed, to test how song_caption validates it."""

    name = "fixed"

    def __init__(self, answer):
        self.answer = answer
        self.prompts: list[str] = []

    def summarize(self, text_prompt):
        self.prompts.append(text_prompt)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_caption_prompt_holds_the_windows_and_the_facts():
    prompt = caption_prompt(WINDOWS, make_analysis(bpm=118.4, keyscale="A minor", duration=183.0))
    assert "Filtered synth pads fade in" in prompt and "wide stacked harmonies" in prompt
    assert "out of memory" not in prompt  # failed windows are left out
    assert "118 BPM" in prompt and "A minor" in prompt and "3:03" in prompt
    assert "synth-pop" in prompt.lower() and "single paragraph" in prompt
    excerpts = prompt[prompt.index("Excerpts in order"):]
    assert excerpts.index("Filtered") < excerpts.index("breathy female voice") < excerpts.index("wide stacked")


def test_caption_prompt_stays_short_for_a_long_song():
    many = [WindowDescription(summary=f"Window {i} has its own words.") for i in range(200)]
    prompt = caption_prompt(many, make_analysis())
    assert prompt.count("has its own words") == 24
    assert "Window 0 has" in prompt


def test_fallback_caption_is_deterministic_and_built_from_the_fields():
    analysis = make_analysis(bpm=121.0, keyscale="A minor")
    text = fallback_caption(WINDOWS, analysis)
    assert text == fallback_caption(list(WINDOWS), analysis)
    assert text.startswith("Synth-pop and electropop, upbeat at 121 BPM in A minor, with synth pads")
    assert "synth pads" in text and text.lower().count("synth pads") == 1  # merged case-insensitively
    assert "breathy female lead" in text and "sidechain pumping" in text
    assert len(text.split()) <= MAX_CAPTION_WORDS


def test_fallback_caption_without_model_fields():
    assert fallback_caption([], make_analysis(bpm=70, keyscale="C major")) == "A song, slow at 70 BPM in C major."
    assert fallback_caption([WindowDescription()], make_analysis()) == "A song."
    instrumental = [WindowDescription(genres=["ambient"], vocal_language="instrumental")]
    assert fallback_caption(instrumental, make_analysis()) == "Ambient. Instrumental."


def test_song_caption_uses_a_good_model_answer():
    answer = ("Caption: \"A shimmering synth-pop track with a breathy female voice, pulsing bass and wide "
              "harmonies that open up in the chorus.\"")
    engine = FixedEngine(answer)
    caption = song_caption(engine, WINDOWS, make_analysis(bpm=120))
    assert caption.startswith("A shimmering synth-pop track") and caption.endswith("chorus.")
    assert len(engine.prompts) == 1 and "Filtered synth pads" in engine.prompts[0]


def test_song_caption_unwraps_json_and_truncates():
    long = " ".join(["A driving rock song with loud guitars."] * 60)
    caption = song_caption(FixedEngine(json.dumps({"caption": long})), WINDOWS, make_analysis())
    assert caption.startswith("A driving rock song") and caption.endswith(".")
    assert len(caption.split()) <= MAX_CAPTION_WORDS


@pytest.mark.parametrize("answer", [None, "", "   ", "\ufffd\x05K@[=\r\ufffd" * 10, "ok", "{}", RuntimeError("boom")])
def test_song_caption_falls_back_on_unusable_answers(answer):
    analysis = make_analysis(bpm=121.0, keyscale="A minor")
    assert song_caption(FixedEngine(answer), WINDOWS, analysis) == fallback_caption(WINDOWS, analysis)


def test_song_caption_with_the_dsp_engine_or_no_summaries_skips_the_model():
    analysis = make_analysis(bpm=90)
    assert song_caption(DspEngine(), WINDOWS, analysis) == fallback_caption(WINDOWS, analysis)
    engine = FixedEngine("A perfectly fine caption about nothing at all.")
    empty = [WindowDescription(), WindowDescription(ok=False, error="x")]
    assert song_caption(engine, empty, analysis) == fallback_caption(empty, analysis)
    assert engine.prompts == []  # nothing to summarise: no model call
    assert song_caption(None, WINDOWS, analysis) == fallback_caption(WINDOWS, analysis)


def test_clean_caption_and_truncation():
    assert clean_caption("```\nA calm piano piece with soft strings.\n```") == "A calm piano piece with soft strings."
    assert clean_caption(12) == ""
    assert truncate_words("One two three. Four five six seven", 5) == "One two three."
    assert truncate_words("one two three four five six", 3) == "one two three."
    assert truncate_words("short", 3) == "short"


def test_helpers():
    assert [tempo_feel(b) for b in (None, 60, 90, 120, 174)] == ["", "slow", "mid-tempo", "upbeat", "fast"]
    assert top_items([["b", "A"], ["a", "c"], ["C", "a"]], 2) == ["A", "c"]
