"""From transcribed words to the annotator's fields: each region's lines, the song's lyrics, its vocal language,
and a note where the description model and the transcriber disagree about vocals.

A word belongs to the region that holds its midpoint. Inside a region a new line starts after a pause longer
than ``pause_seconds``, after a sentence end, and after MAX_LINE_WORDS words. Pure functions; times are seconds.
"""

from __future__ import annotations

import re

from label_config.vocabulary import normalize_language

from ml_backend.lyrics.types import Word

# A line with no pause in it for this many words is a run-on transcription; break it so that it stays readable
# in the region's text box (sung lines rarely exceed 12 words).
MAX_LINE_WORDS = 14
SENTENCE_END = re.compile(r"[.!?。！？…]['\")\]”’]*$")


def words_by_region(words: list[Word], bounds: list[tuple[float, float]]) -> list[list[Word]]:
    """The words of each region [start, end) by midpoint, in time order; a word outside every region (before the
    first, after the last, in a gap) goes to the nearest one."""
    buckets: list[list[Word]] = [[] for _ in bounds]
    if not bounds:
        return buckets
    for word in sorted(words, key=lambda w: (w.start, w.end)):
        inside = [i for i, (s, e) in enumerate(bounds) if s <= word.mid < e]
        if inside:
            index = inside[0]
        else:
            index = min(range(len(bounds)),
                        key=lambda i: min(abs(word.mid - bounds[i][0]), abs(word.mid - bounds[i][1])))
        buckets[index].append(word)
    return buckets


def split_lines(words: list[Word], pause_seconds: float) -> list[str]:
    """The words as lines: a break where the gap between one word's end and the next one's start is longer than
    ``pause_seconds``, after a word ending a sentence, and every MAX_LINE_WORDS words."""
    lines: list[list[str]] = []
    previous: Word | None = None
    for word in words:
        text = word.text.strip()
        if not text:
            continue
        new_line = (previous is None or word.start - previous.end > pause_seconds
                    or bool(SENTENCE_END.search(previous.text.strip())) or len(lines[-1]) >= MAX_LINE_WORDS)
        if new_line:
            lines.append([])
        lines[-1].append(text)
        previous = word
    return [_join(line) for line in lines]


def _join(tokens: list[str]) -> str:
    """Words of one line as text: spaces between words, none between CJK characters (Whisper writes those
    without spaces)."""
    out = ""
    for token in tokens:
        if out and not (_is_cjk(out[-1]) and _is_cjk(token[0])):
            out += " "
        out += token
    return out


def _is_cjk(char: str) -> bool:
    return "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af"


def vocal_language(language: str, has_words: bool) -> str:
    """The song's ``vocal_language`` code (label_config.vocabulary.LANGUAGES) from the transcriber's language
    (a Whisper code such as "en" or a name such as "english"): "instrumental" without sung words, "unknown" for a
    language outside our list."""
    if not has_words:
        return "instrumental"
    code = normalize_language(language or "")
    return code if code and code != "instrumental" else "unknown"


def described_vocals(descriptions: list) -> bool | None:
    """Whether the description model heard vocals in a region: True when a described window names a sung
    language, False when the described windows call it instrumental, None when they say neither."""
    said = [normalize_language(d.vocal_language) for d in descriptions if d.ok and d.vocal_language]
    said = [c for c in said if c]
    if not said:
        return None
    return any(c != "instrumental" for c in said)


def disagreement_note(heard_by_model: bool | None, has_words: bool, dropped: list) -> str:
    """A line for the region notes when the description model and the transcriber disagree about vocals (the
    annotator decides by ear); "" when they agree or the model said nothing."""
    if heard_by_model is True and not has_words:
        why = f" ({_reasons(dropped)})" if dropped else ""
        return f"Lyrics: the description model hears vocals here, but the transcriber kept no sung words{why}."
    if heard_by_model is False and has_words:
        return "Lyrics: the transcriber found sung words here, but the description model calls it instrumental."
    return ""


def _reasons(dropped: list) -> str:
    """The distinct reasons of dropped (word, reason) pairs, in order of first appearance."""
    seen: list[str] = []
    for _, reason in dropped:
        if reason not in seen:
            seen.append(reason)
    return "dropped: " + "; ".join(seen)
