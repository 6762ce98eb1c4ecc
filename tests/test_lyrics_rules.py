"""The lyrics stage's rules without a model: chunk planning and stitching, words into regions and lines, guards,
language mapping, and how a transcript fills a SongAnnotation."""

from __future__ import annotations

import numpy as np
import pytest

from label_config.sidecar import Region, SongAnnotation, lyrics_file_text
from ml_backend.describe.types import WindowDescription
from ml_backend.lyrics.align import (
    MAX_LINE_WORDS, described_vocals, disagreement_note, split_lines, vocal_language, words_by_region,
)
from ml_backend.lyrics.chunks import CHUNK_SECONDS, OVERLAP_SECONDS, Chunk, plan_chunks, stitch
from ml_backend.lyrics.guards import GuardSettings, apply_guards, compression_ratio, drop_loops, segment_problem
from ml_backend.lyrics.stage import LyricsStage, clean_text, song_transcript
from ml_backend.lyrics.engines.base import ChunkResult
from ml_backend.lyrics.types import Segment, Transcript, Word
from ml_backend.lyrics.voice import VoiceActivity
from ml_backend.prediction.merge import RegionPlan
from ml_backend.settings import Settings


def words(text: str, start: float, step: float = 0.4, length: float = 0.3) -> list[Word]:
    return [Word(t, start + i * step, start + i * step + length) for i, t in enumerate(text.split())]


# --- chunks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [0.5, 12.0, 30.0, 30.5, 61.0, 200.0, 241.3])
def test_chunks_cover_the_song_overlap_and_never_pass_30_seconds(duration):
    chunks = plan_chunks(duration)
    assert chunks[0].start == 0.0 and chunks[-1].end == pytest.approx(duration)
    for c in chunks:
        assert 0 < c.end - c.start <= CHUNK_SECONDS
    for a, b in zip(chunks, chunks[1:]):
        assert a.end - b.start >= OVERLAP_SECONDS - 1e-9  # every seam has its margin
        assert b.start > a.start
    assert plan_chunks(0.0) == []


def test_stitching_keeps_each_word_once_when_neighbours_disagree_about_times():
    a, b = Chunk(0.0, 30.0), Chunk(25.0, 55.0)
    text = "one two three four five six seven eight nine ten"
    truth = words(text, 23.0)  # 23.0 .. 26.9 s: across the overlap [25, 30)
    left = [w for w in truth if w.start < 30.0]
    # the right chunk hears the same words 0.3 s later (timestamp jitter) and misses the first ones (cut off)
    right = [Word(w.text, w.start + 0.3, w.end + 0.3) for w in truth if w.start >= 25.0]
    stitched = stitch([a, b], [left, right])
    assert [w.text for w in stitched] == text.split()


def test_stitching_without_shared_words_cuts_at_the_middle_of_the_overlap():
    a, b = Chunk(0.0, 30.0), Chunk(25.0, 55.0)
    left = [Word("early", 20.0, 20.5), Word("alpha", 26.0, 26.5), Word("beta", 28.0, 28.5)]
    right = [Word("gamma", 26.1, 26.6), Word("delta", 28.1, 28.6), Word("late", 40.0, 40.5)]
    assert [w.text for w in stitch([a, b], [left, right])] == ["early", "alpha", "delta", "late"]


def test_stitching_skipped_and_empty_chunks():
    chunks = plan_chunks(80.0)
    parts = [[] for _ in chunks]
    parts[-1] = [Word("end", 78.0, 78.5)]
    assert [w.text for w in stitch(chunks, parts)] == ["end"]
    assert stitch([], []) == []


# --- words -> regions -> lines ------------------------------------------------------------------------------


def test_a_word_belongs_to_the_region_holding_its_midpoint():
    bounds = [(0.0, 10.0), (10.0, 20.0)]
    edge = [Word("before", 9.5, 10.3), Word("after", 9.8, 10.4), Word("late", 25.0, 25.5), Word("pre", -1, -0.5)]
    buckets = words_by_region(edge, bounds)
    assert [w.text for w in buckets[0]] == ["pre", "before"]  # midpoints 9.9 and -0.75 (nearest region)
    assert [w.text for w in buckets[1]] == ["after", "late"]  # 10.1, and 25.25 after the last region


def test_lines_break_at_pauses_and_sentence_ends():
    ws = words("hold me close", 0.0) + words("never let go.", 3.0) + words("the night is young", 4.3)
    assert split_lines(ws, pause_seconds=0.8) == ["hold me close", "never let go.", "the night is young"]
    # a shorter pause setting splits where the gaps are longer than it
    assert len(split_lines(words("a b c", 0.0, step=0.5, length=0.3), pause_seconds=0.1)) == 3
    long = words(" ".join(f"w{i}" for i in range(MAX_LINE_WORDS + 3)), 0.0)
    assert [len(x.split()) for x in split_lines(long, 0.8)] == [MAX_LINE_WORDS, 3]
    assert split_lines([Word("你", 0, 0.2), Word("好", 0.2, 0.4)], 0.8) == ["你好"]  # no spaces inside CJK


def test_vocal_language_maps_whisper_codes_and_names():
    assert vocal_language("english", True) == "en"
    assert vocal_language("en", True) == "en"
    assert vocal_language("Japanese", True) == "ja"
    assert vocal_language("swahili", True) == "unknown"  # sung, but not a language of our list
    assert vocal_language("", True) == "unknown"
    assert vocal_language("english", False) == "instrumental"


def test_disagreement_is_stated_not_resolved():
    sung = [WindowDescription(vocal_language="English")]
    inst = [WindowDescription(vocal_language="instrumental")]
    assert described_vocals(sung) is True and described_vocals(inst) is False
    assert described_vocals([WindowDescription()]) is None
    assert described_vocals([WindowDescription.failed("x")]) is None
    assert "hears vocals" in disagreement_note(True, False, [(Word("x", 0, 1), "a repeated loop")])
    assert "a repeated loop" in disagreement_note(True, False, [(Word("x", 0, 1), "a repeated loop")])
    assert "instrumental" in disagreement_note(False, True, [])
    assert disagreement_note(True, True, []) == disagreement_note(None, False, []) == ""


# --- guards -----------------------------------------------------------------------------------------------


def test_segment_guards_use_whispers_own_rules():
    limits = GuardSettings()
    silent = Segment(0, 30, "Thank you.", no_speech_prob=0.9, avg_logprob=-1.5)
    confident = Segment(0, 30, "Thank you.", no_speech_prob=0.9, avg_logprob=-0.2)  # sure of its words
    looped = Segment(0, 30, "la la la " * 40)
    assert segment_problem(silent, limits) and not segment_problem(confident, limits)
    assert segment_problem(looped, limits) == "repetitive transcription"
    assert compression_ratio("la la la " * 40) > 2.4 > compression_ratio("hold me close, never let me go")
    assert segment_problem(Segment(0, 30, "words"), limits) == ""  # a server without the figures


def test_stock_phrases_and_loops_are_dropped():
    limits = GuardSettings(max_repeats=3)
    ws = words("walking home Thanks for watching! see you", 0.0)
    kept, dropped = apply_guards(ws, [], limits)
    assert [w.text for w in kept] == ["walking", "home", "see", "you"]
    assert {r for _, r in dropped} == {"a stock phrase, not lyrics"}
    loop = words("oh " + "I love you " * 5 + "goodbye", 0.0)
    kept, dropped = drop_loops(loop, max_repeats=3)
    assert [w.text for w in kept] == ["oh", "goodbye"]
    assert drop_loops(words("na na na", 0.0), 3)[0] == words("na na na", 0.0)  # three is a lyric here


def test_clean_text_removes_control_characters_and_undecodable_bytes():
    assert clean_text("\x0ehe\ufffdllo\x17 ") == "hello"


# --- the stage's fields -----------------------------------------------------------------------------------


def song_of(bounds, labels) -> tuple[SongAnnotation, list[RegionPlan]]:
    regions = [Region(s, e, label, id=f"seg{i + 1}") for i, ((s, e), label) in enumerate(zip(bounds, labels))]
    plans = [RegionPlan(s, e, "A", []) for s, e in bounds]
    return SongAnnotation(language="en", duration=bounds[-1][1], regions=regions), plans


def voice_everywhere(seconds: float) -> VoiceActivity:
    return VoiceActivity(np.ones(int(seconds / 0.032) + 1, dtype=np.float32))


def test_apply_fills_region_lyrics_song_lyrics_and_language():
    song, plans = song_of([(0, 10), (10, 20), (20, 30)], ["Verse", "Instrumental", "Chorus"])
    plans[1].descriptions.append(WindowDescription(vocal_language="English"))  # the model hears a voice here
    t = Transcript(words=words("hello there.", 1.0) + words("sing it loud", 21.0) + words("sing again", 24.0),
                   language="english", voice=voice_everywhere(30))
    LyricsStage(Settings(lyrics_engine="openai", lyrics_base_url="http://x/v1")).apply(song, t, plans)
    assert [r.lyrics for r in song.regions] == ["hello there.", "", "sing it loud\nsing again"]
    assert song.lyrics == "[Verse]\nhello there.\n\n[Chorus]\nsing it loud\nsing again"
    assert song.language == "en"
    assert "hears vocals" in song.regions[1].notes
    assert lyrics_file_text(song).startswith("[Verse]\nhello there.")


def test_apply_without_sung_words_makes_the_song_instrumental():
    song, plans = song_of([(0, 10), (10, 20)], ["Intro", "Verse"])
    t = Transcript(words=words("Thanks for watching!", 12.0), segments=[], language="english",
                   voice=voice_everywhere(20))
    LyricsStage(Settings(lyrics_engine="whisper")).apply(song, t, plans)
    assert all(r.lyrics == "" for r in song.regions)
    assert song.lyrics == "" and song.language == "instrumental"


def test_apply_drops_words_of_a_region_without_voice():
    song, plans = song_of([(0, 10), (10, 20)], ["Verse", "Chorus"])
    probabilities = np.zeros(int(20 / 0.032) + 1, dtype=np.float32)
    probabilities[: int(10 / 0.032)] = 0.9  # a voice only in the first region
    t = Transcript(words=words("real words", 2.0) + words("invented words", 12.0), language="en",
                   voice=VoiceActivity(probabilities))
    LyricsStage(Settings(lyrics_engine="whisper")).apply(song, t, plans)
    assert [r.lyrics for r in song.regions] == ["real words", ""]


def test_a_failed_transcription_leaves_the_song_as_the_description_model_had_it():
    song, plans = song_of([(0, 10)], ["Verse"])
    LyricsStage(Settings(lyrics_engine="whisper")).apply(song, Transcript.failed("server down"), plans)
    assert song.language == "en" and song.lyrics == "" and song.regions[0].notes == ""
    LyricsStage(Settings()).apply(song, None, plans)  # lyrics off: nothing happens
    assert song.language == "en"


def test_song_transcript_shifts_stitches_and_votes_the_language():
    chunks = plan_chunks(55.0)
    assert chunks == [Chunk(0.0, 30.0), Chunk(25.0, 55.0)]
    results = [ChunkResult(words=[Word("a", 1.0, 1.5)], segments=[Segment(0, 30, "a")], language="english"),
               ChunkResult(words=[Word("b", 20.0, 20.5), Word("c", 21.0, 21.5)], language="English")]
    t = song_transcript(chunks, chunks, results, None)
    assert [(w.text, w.start) for w in t.words] == [("a", 1.0), ("b", 45.0), ("c", 46.0)]
    assert t.language == "english" and t.ok and t.segments[0].end == 30
    failed = song_transcript(chunks, chunks, [results[0], ChunkResult.failed("timeout")], None)
    assert not failed.ok and "timeout" in failed.error and [w.text for w in failed.words] == ["a"]
