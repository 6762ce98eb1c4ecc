"""No invented words: drop what Whisper is known to write over music that nobody sings.

Four checks, each cheap and each naming why it dropped words (the reasons go into the region notes):
- the decoder's own figures per segment, as Whisper itself uses them: a segment is silence when its no-speech
  probability is high AND its mean log-probability low; it is a loop when its text compresses too well;
- stock phrases Whisper learned from subtitles ("Thanks for watching!"), which no lyric transcription needs;
- repetition: the same 1 to MAX_NGRAM words back to back more than ``max_repeats`` times (a decoding loop);
- voice activity (``voice``): words in a region where Silero hears less than ``min_voice_seconds`` of voice.
Pure functions over ``types`` objects; times are song seconds.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from ml_backend.lyrics.types import Segment, Word

MAX_NGRAM = 6  # longest repeated word group looked for: a loop of a short line
# Lower-cased phrases Whisper writes over silence and music (learned from subtitle files); a segment whose text
# holds one is dropped whole.
STOCK_PHRASES = (
    "thanks for watching", "thank you for watching", "please subscribe", "subscribe to my channel",
    "like and subscribe", "subtitles by", "subtitled by", "captions by", "transcribed by", "amara.org",
    "see you in the next video", "www.", ".com",
)


@dataclass(frozen=True)
class GuardSettings:
    """The limits (from the LYRICS_* settings): Whisper's own defaults for the decoder figures."""

    no_speech_threshold: float = 0.6  # Whisper's no_speech_threshold
    logprob_threshold: float = -1.0  # Whisper's logprob_threshold
    compression_ratio_threshold: float = 2.4  # Whisper's compression_ratio_threshold
    max_repeats: int = 6  # "na na na na na na" is a lyric; a seventh in a row is a loop
    min_voice_seconds: float = 1.0  # 0 turns the voice-activity check off

    @classmethod
    def from_settings(cls, settings) -> "GuardSettings":
        return cls(settings.lyrics_no_speech_threshold, settings.lyrics_logprob_threshold,
                   settings.lyrics_compression_ratio_threshold, settings.lyrics_max_repeats,
                   settings.lyrics_min_voice_seconds)


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression (Whisper's measure; about 1 to 2 for lyrics)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def segment_problem(segment: Segment, limits: GuardSettings) -> str:
    """Why the segment's words are not to be trusted, or "" when they pass."""
    if (segment.no_speech_prob is not None and segment.no_speech_prob > limits.no_speech_threshold
            and (segment.avg_logprob is None or segment.avg_logprob < limits.logprob_threshold)):
        return "no speech heard by the transcriber"
    ratio = segment.compression_ratio
    if ratio is None and segment.text:
        ratio = compression_ratio(segment.text)
    if ratio is not None and ratio > limits.compression_ratio_threshold:
        return "repetitive transcription"
    return ""


def _segment_of(word: Word, segments: list[Segment]) -> int:
    """Index of the segment holding the word's midpoint (the nearest one when none does); -1 without segments."""
    if not segments:
        return -1
    inside = [i for i, s in enumerate(segments) if s.start <= word.mid <= s.end]
    if inside:
        return inside[0]
    return min(range(len(segments)),
               key=lambda i: min(abs(word.mid - segments[i].start), abs(word.mid - segments[i].end)))


def drop_bad_segments(words: list[Word], segments: list[Segment], limits: GuardSettings) -> tuple[list[Word], list]:
    """``words`` without those of failing segments, and the dropped ones as (word, reason)."""
    problems = [segment_problem(s, limits) for s in segments]
    kept, dropped = [], []
    for word in words:
        index = _segment_of(word, segments)
        reason = problems[index] if index >= 0 else ""
        if reason:
            dropped.append((word, reason))
        else:
            kept.append(word)
    return kept, dropped


def drop_stock_phrases(words: list[Word]) -> tuple[list[Word], list]:
    """``words`` without the runs that spell one of STOCK_PHRASES (case and punctuation aside; a phrase with a
    dot, a web address, is found inside a single word), and the dropped ones."""
    keys = [re.sub(r"[^\w.]+", "", w.text.lower()).strip(".") for w in words]
    remove: set[int] = set()
    for phrase in STOCK_PHRASES:
        if "." in phrase:
            remove.update(i for i, w in enumerate(words) if phrase in w.text.lower())
            continue
        target = phrase.replace(" ", "")
        for i in range(len(words)):
            joined = ""
            for j in range(i, len(words)):
                joined += keys[j]
                if joined == target:
                    remove.update(range(i, j + 1))
                if not target.startswith(joined):
                    break
    return ([w for i, w in enumerate(words) if i not in remove],
            [(w, "a stock phrase, not lyrics") for i, w in enumerate(words) if i in remove])


def drop_loops(words: list[Word], max_repeats: int) -> tuple[list[Word], list]:
    """``words`` without runs of the same 1..MAX_NGRAM words repeated back to back more than ``max_repeats``
    times (the whole run goes: a decoding loop carries no trustworthy words), and the dropped ones."""
    keys = [re.sub(r"\W+", "", w.text.lower()) for w in words]
    remove: set[int] = set()
    for n in range(1, MAX_NGRAM + 1):
        i = 0
        while i + n <= len(words):
            gram = keys[i:i + n]
            repeats = 1
            while keys[i + repeats * n:i + (repeats + 1) * n] == gram:
                repeats += 1
            if repeats > max_repeats and any(gram):
                remove.update(range(i, i + repeats * n))
                i += repeats * n
            else:
                i += 1
    return ([w for i, w in enumerate(words) if i not in remove],
            [(w, "a repeated loop") for i, w in enumerate(words) if i in remove])


def apply_guards(words: list[Word], segments: list[Segment], limits: GuardSettings) -> tuple[list[Word], list]:
    """The decoder-figure, stock-phrase and loop checks in that order: (kept words, [(word, reason)])."""
    kept, dropped = drop_bad_segments(words, segments, limits)
    kept, stock = drop_stock_phrases(kept)
    kept, looped = drop_loops(kept, limits.max_repeats)
    return kept, dropped + stock + looped
