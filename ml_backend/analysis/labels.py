"""Section labels from repetition and energy, the way an annotator reads a song's form, for regions the model
gives no label (and as the DSP's evidence beside the model's label, see prediction/merge.py).

- Silence stays Silence (the one label the signal proves).
- The Chorus is the repeated part with the highest energy (mean loudness); another repeated part is a Verse, or
  a Pre-Chorus when it always leads straight into the Chorus.
- An Intro is a short opening (at most INTRO_MAX_SECONDS) before the first repeated material; in a longer
  opening the first part when short, the others Verses.
- An Outro is the closing part when it is heard once, or when its energy drops (OUTRO_DROP_DB under the rest).
- A Bridge is a part heard once between repeats.
- Instrumental: a part of at least INSTRUMENTAL_MIN_SECONDS heard without vocals in a song with vocals, where
  that is known (the model's hearing, passed as `vocals`; the signal alone cannot tell a voice).
- Through-composed music (few repeats) must not become a row of one label: when one label holds more than
  MAX_LABEL_SHARE of five or more regions, those regions are relabelled by energy, loudest third Chorus,
  middle third Bridge, quietest third Verse (then balanced further if still needed).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from label_config.vocabulary import SECTION_LABELS

INTRO_MAX_SECONDS = 30.0  # an opening longer than this before the first repeat is a part of the song, not an intro
OUTRO_DROP_DB = 3.0  # a closing part this much quieter than the other music sections is an Outro even if it repeats
MAX_LABEL_SHARE = 0.6  # no label on more than this share of a song's regions ...
MIN_BALANCED_REGIONS = 5  # ... once it has this many music regions
INSTRUMENTAL_MIN_SECONDS = 10.0  # a shorter part without vocals is a gap between lines, not an instrumental part
_ENERGY_TIERS = ("Verse", "Bridge", "Chorus")  # quietest to loudest, for parts repetition says nothing about

_FALLBACKS = {
    "Chorus": ("Chorus", "Verse"),
    "Verse": ("Verse", "Chorus"),
    "Pre-Chorus": ("Pre-Chorus", "Build", "Verse"),
    "Intro": ("Intro", "Instrumental", "Verse"),
    "Outro": ("Outro", "Instrumental", "Verse"),
    "Bridge": ("Bridge", "Instrumental", "Solo", "Verse"),
    "Silence": ("Silence", "Instrumental"),
}


def _pick(wanted: str, allowed: tuple[str, ...]) -> str:
    """`wanted` when allowed, else its first allowed fallback, else the first allowed label."""
    for label in _FALLBACKS.get(wanted, (wanted,)):
        if label in allowed:
            return label
    return allowed[0] if allowed else wanted


def _is_pre_chorus(sections: list, letter: str, chorus: str | None, repeated: list[str]) -> bool:
    """True when every `letter` section sits between another repeated section and the chorus (V P C V P C)."""
    if chorus is None:
        return False
    spots = [i for i, s in enumerate(sections) if s.letter == letter]
    return all(0 < i < len(sections) - 1 and sections[i + 1].letter == chorus
               and sections[i - 1].letter in repeated and sections[i - 1].letter not in (letter, chorus)
               for i in spots)


def form_labels(sections: list, vocals: list | None = None) -> list[str]:
    """Labels from the form (repetition letters, loudness in dB, start/end in seconds), from the full
    vocabulary; see the module text. `sections` are ml_backend.analysis.structure.Section objects; `vocals`, one
    per section where known: True (vocals heard), False (none), None (unknown)."""
    music = [i for i, s in enumerate(sections) if not s.label]
    counts = Counter(sections[i].letter for i in music)
    repeated = [letter for letter, c in counts.items() if c > 1]
    loud = {k: float(np.mean([sections[i].loudness for i in music if sections[i].letter == k])) for k in counts}
    chorus = max(repeated, key=lambda k: (loud[k], counts[k]), default=None)
    first_repeat = next((i for i in music if sections[i].letter in repeated), None)
    last_repeat = next((i for i in reversed(music) if sections[i].letter in repeated), None)
    labels = [s.label for s in sections]  # Silence kept
    for i in music:
        s = sections[i]
        if s.letter == chorus:
            labels[i] = "Chorus"
        elif s.letter in repeated:
            labels[i] = "Pre-Chorus" if _is_pre_chorus(sections, s.letter, chorus, repeated) else "Verse"
        elif first_repeat is not None and first_repeat < i < last_repeat:
            labels[i] = "Bridge"
        else:
            labels[i] = ""  # before the first or after the last repeat: intro, outro or a part of its own
    if len(music) <= 1:
        return [lab or "Verse" for lab in labels]
    # without repeats only the first part can be an opening
    opening = [i for i in music if i < first_repeat] if first_repeat is not None else music[:1]
    if opening and sections[opening[-1]].end - sections[opening[0]].start <= INTRO_MAX_SECONDS:
        for i in opening:
            labels[i] = "Intro"
    elif opening:  # a long opening: a short first part is the intro, the rest lead in like verses
        for i in opening:
            labels[i] = "Verse"
        if sections[opening[0]].end - sections[opening[0]].start <= INTRO_MAX_SECONDS:
            labels[opening[0]] = "Intro"
    last = music[-1]
    others = [sections[i].loudness for i in music if i != last]
    if not labels[last] or (others and sections[last].loudness <= float(np.mean(others)) - OUTRO_DROP_DB):
        labels[last] = "Outro"
    for i in music:  # parts of their own outside the repeats (through-composed music): read by energy below
        labels[i] = labels[i] or "Bridge"
    labels = _balance(sections, labels, music)
    if vocals and any(v is True for v in vocals):
        for i in music:
            long_enough = sections[i].end - sections[i].start >= INSTRUMENTAL_MIN_SECONDS
            if i < len(vocals) and vocals[i] is False and long_enough and labels[i] not in ("Intro", "Outro"):
                labels[i] = "Instrumental"
    return labels


def _balance(sections: list, labels: list[str], music: list[int]) -> list[str]:
    """Relabel by energy when one label holds more than MAX_LABEL_SHARE of MIN_BALANCED_REGIONS or more music
    regions (see the module text). Parts that repeat move together (a letter keeps one label); Intro, Outro
    and Silence are left alone."""
    if len(music) < MIN_BALANCED_REGIONS:
        return labels
    limit = int(np.floor(MAX_LABEL_SHARE * len(music)))
    for _ in range(2 * len(music)):
        counts = Counter(labels[i] for i in music)
        label, count = counts.most_common(1)[0]
        if count <= limit or label in ("Intro", "Outro"):
            break
        repeated: dict[str, list[int]] = {}
        once: list[int] = []
        for i in music:
            if labels[i] == label:
                if _repeats(sections, music, i):
                    repeated.setdefault(sections[i].letter, []).append(i)
                else:
                    once.append(i)
        other = "Bridge" if label != "Bridge" else "Verse"
        if len(repeated) > 1:  # the letter heard first keeps the label, later letters move on
            for group in sorted(repeated.values(), key=lambda g: g[0])[1:]:
                for i in group:
                    labels[i] = other
        elif once:  # parts heard once: quietest third Verse, middle Bridge, loudest Chorus
            once.sort(key=lambda i: sections[i].loudness)
            for rank, i in enumerate(once):
                labels[i] = _ENERGY_TIERS[min(2, rank * 3 // len(once))]
            if all(labels[i] == label for i in once):
                labels[once[-1]] = other
        else:  # one repeated letter holds too many regions: its later returns move on
            for i in next(iter(repeated.values()))[limit:]:
                labels[i] = other
    return labels


def _repeats(sections: list, music: list[int], i: int) -> bool:
    """True when section `i`'s letter appears on another music section."""
    return sum(1 for j in music if sections[j].letter == sections[i].letter) > 1


def letters_to_labels(sections: list, allowed_labels: list[str] | tuple[str, ...] = SECTION_LABELS,
                      vocals: list | None = None) -> list[str]:
    """Section labels from repetition and energy (`form_labels`, with `vocals` where known), each mapped onto
    `allowed_labels` (fallbacks: Verse, Instrumental)."""
    allowed = tuple(allowed_labels) or SECTION_LABELS
    return [_pick(label, allowed) for label in form_labels(sections, vocals)]
