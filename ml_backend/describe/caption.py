"""The song-level caption in ACE-Step's style: one paragraph on genre, mood, instruments, vocals and tempo feel.

``song_caption`` asks the engine to summarise the window descriptions (text only); when it cannot, or answers
with something unusable, ``fallback_caption`` builds one deterministically from the window fields and the
analysis. ``analysis`` is an ``ml_backend.analysis.music.MusicAnalysis``; only ``bpm`` (beats per minute),
``keyscale`` and ``duration`` (seconds) are read.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from ml_backend.describe.types import WindowDescription
from ml_backend.describe.prompt import extract_json_object, looks_like_text

log = logging.getLogger(__name__)

MAX_CAPTION_WORDS = 150  # keeps the caption well under ACE-Step's 256-token text budget
MAX_SUMMARIES = 24  # window summaries quoted in the caption prompt (a long song is sampled evenly)


def tempo_feel(bpm: float | None) -> str:
    """Words for a tempo in beats per minute; "" when unknown."""
    if not bpm:
        return ""
    if bpm < 76:
        return "slow"
    if bpm < 100:
        return "mid-tempo"
    if bpm < 130:
        return "upbeat"
    return "fast"


def top_items(lists: Iterable[Sequence[str]], limit: int) -> list[str]:
    """The ``limit`` most frequent items over several lists, case-insensitive, ties by first appearance;
    keeps the first spelling seen."""
    counts: Counter = Counter()
    first: dict[str, tuple[int, str]] = {}
    for items in lists:
        for item in items:
            key = item.strip().lower()
            if not key:
                continue
            counts[key] += 1
            first.setdefault(key, (len(first), item.strip()))
    ranked = sorted(counts, key=lambda k: (-counts[k], first[k][0]))
    return [first[k][1] for k in ranked[:limit]]


def _usable(descriptions: Sequence[WindowDescription]) -> list[WindowDescription]:
    return [d for d in descriptions if d.ok]


def _facts(analysis) -> list[str]:
    """Measured facts for the prompt: duration, tempo, key."""
    facts = []
    duration = getattr(analysis, "duration", None)
    if duration:
        facts.append(f"duration {int(duration // 60)}:{int(duration % 60):02d}")
    bpm = getattr(analysis, "bpm", None)
    if bpm:
        facts.append(f"tempo about {round(bpm)} BPM ({tempo_feel(bpm)})")
    keyscale = getattr(analysis, "keyscale", None)
    if keyscale:
        facts.append(f"key {keyscale}")
    return facts


def caption_prompt(descriptions: Sequence[WindowDescription], analysis) -> str:
    """A text-only prompt asking for one ACE-Step style caption summarising the window descriptions in order."""
    usable = _usable(descriptions)
    if len(usable) > MAX_SUMMARIES:  # sample evenly so the prompt stays short for long songs
        step = len(usable) / MAX_SUMMARIES
        usable = [usable[int(i * step)] for i in range(MAX_SUMMARIES)]
    lines = []
    for n, d in enumerate(usable, 1):
        label = f" ({d.section_label})" if d.section_label else ""
        if d.summary:
            lines.append(f"{n}.{label} {d.summary}")
    merged = {
        "genres": top_items((d.genres for d in usable), 4),
        "instruments": top_items((d.instruments for d in usable), 8),
        "vocals": top_items((d.vocal_characteristics for d in usable), 4),
        "effects": top_items((d.effects for d in usable), 4),
    }
    notes = "\n".join(f"- {k}: {', '.join(v)}" for k, v in merged.items() if v)
    facts = ", ".join(_facts(analysis)) or "not measured"
    return (
        "Below are notes a listener wrote about consecutive excerpts of one song, and measured facts about it.\n"
        f"Measured: {facts}.\n"
        + (f"Most mentioned:\n{notes}\n" if notes else "")
        + "Excerpts in order:\n" + ("\n".join(lines) or "(no notes)") + "\n\n"
        "Write ONE caption for the whole song as a single paragraph of plain prose, as used to train a music "
        "generation model: the genre and style, the mood, the main instruments and their sound, the vocals (or "
        f"that it is instrumental), the tempo feel and how the song develops. At most {MAX_CAPTION_WORDS - 30} "
        "words. No lists, no headings, no timestamps, no section names, no quotes. Answer with the caption only."
    )


def fallback_caption(descriptions: Sequence[WindowDescription], analysis) -> str:
    """A deterministic caption from the window fields (most frequent first) and the measured tempo and key,
    e.g. "Indie rock, upbeat at 128 BPM in A minor, with electric guitar, bass and drums. ..."."""
    usable = _usable(descriptions)
    genres = top_items((d.genres for d in usable), 3)
    instruments = top_items((d.instruments for d in usable), 5)
    vocals = top_items((d.vocal_characteristics for d in usable), 3)
    effects = top_items((d.effects for d in usable), 3)
    languages = top_items(([d.vocal_language] for d in usable if d.vocal_language), 1)

    bpm = getattr(analysis, "bpm", None)
    keyscale = getattr(analysis, "keyscale", None)
    head = _upper_first(_join(genres)) if genres else "A song"
    tempo = []
    if bpm:
        tempo.append(f"{tempo_feel(bpm)} at {round(bpm)} BPM")
    if keyscale:
        tempo.append(f"in {keyscale}")
    sentences = [head + (", " + " ".join(tempo) if tempo else "")
                 + (f", with {_join(instruments)}" if instruments else "") + "."]
    if vocals:
        sentences.append(f"Vocals: {_join(vocals)}.")
    elif languages == ["instrumental"]:
        sentences.append("Instrumental.")
    if effects:
        sentences.append(f"Production: {_join(effects)}.")
    return truncate_words(" ".join(sentences), MAX_CAPTION_WORDS)


def song_caption(engine, descriptions: Sequence[WindowDescription], analysis) -> str:
    """The song caption: the engine's text-only summary when it gives readable prose, else the fallback."""
    if engine is not None and any(d.ok and d.summary for d in descriptions):
        try:
            answer = engine.summarize(caption_prompt(descriptions, analysis))
        except Exception as exc:  # an engine should return None; a bug in one must not lose the song
            log.warning("caption: %s.summarize raised %s: %s", getattr(engine, "name", "engine"),
                        type(exc).__name__, exc)
            answer = None
        caption = clean_caption(answer)
        if caption:
            return caption
        if answer is not None:
            log.info("caption: model answer unusable, using the fallback: %r", str(answer)[:120])
    return fallback_caption(descriptions, analysis)


def clean_caption(text: object) -> str:
    """The model's caption tidied: JSON {"caption": ...} unwrapped, fences, quotes and "Caption:" prefixes
    removed, whitespace collapsed, cut to MAX_CAPTION_WORDS; "" when it does not read as text."""
    if not isinstance(text, str):
        return ""
    obj = extract_json_object(text)
    if obj is not None:
        inner = obj.get("caption") or obj.get("description") or obj.get("summary")
        text = inner if isinstance(inner, str) else ""
    text = re.sub(r"```[a-zA-Z]*", " ", text)
    text = re.sub(r"^\s*(?:\*\*)?(?:song\s+)?caption(?:\*\*)?\s*:\s*", "", text.strip(), flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip().strip("\"'“”").strip()
    if not looks_like_text(text, min_words=5):
        return ""
    return truncate_words(text, MAX_CAPTION_WORDS)


def truncate_words(text: str, max_words: int) -> str:
    """``text`` cut to ``max_words`` words, at the last sentence end in the kept part when there is one."""
    words = text.split()
    if len(words) <= max_words:
        return text
    kept = " ".join(words[:max_words])
    end = max(kept.rfind(". "), kept.rfind("! "), kept.rfind("? "))
    if kept.endswith((".", "!", "?")):
        return kept
    if end > len(kept) // 2:
        return kept[:end + 1]
    return kept.rstrip(",;:") + "."


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
