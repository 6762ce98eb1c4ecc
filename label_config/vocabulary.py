"""Allowed values of the song-level fields, spelled as ACE-Step 1.5 reads them, and normalisers for what people
(and models) type.

Every normaliser returns the canonical value or ``None`` when the input cannot be understood; callers decide
whether that is a warning (the converter) or a silent omission (the backend).
"""

from __future__ import annotations

import math
import re

SECTION_LABELS = (
    "Intro", "Verse", "Pre-Chorus", "Chorus", "Post-Chorus", "Bridge", "Instrumental",
    "Solo", "Breakdown", "Build", "Drop", "Outro", "Silence",
)

# One spelling per pitch class and mode, so the <Choices> list has exactly 24 entries and a sidecar value always
# matches one of them. Pitch classes 0..11 from C.
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
KEYSCALES = tuple(f"{n} major" for n in _MAJOR_NAMES) + tuple(f"{n} minor" for n in _MINOR_NAMES)

TIME_SIGNATURES = ("2", "3", "4", "6")

BPM_MIN, BPM_MAX = 30, 300

# ISO 639-1 codes (plus ACE-Step's "yue") with English names; "instrumental" and "unknown" come first.
LANGUAGE_NAMES = {
    "instrumental": "Instrumental",
    "unknown": "Unknown",
    "en": "English", "zh": "Chinese", "yue": "Cantonese", "ja": "Japanese", "ko": "Korean",
    "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese",
    "ru": "Russian", "ar": "Arabic", "hi": "Hindi", "nl": "Dutch", "sv": "Swedish", "pl": "Polish",
    "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian",
    "el": "Greek", "fi": "Finnish", "no": "Norwegian", "da": "Danish", "cs": "Czech",
    "hu": "Hungarian", "ro": "Romanian", "he": "Hebrew", "fa": "Persian", "la": "Latin",
}
LANGUAGES = tuple(LANGUAGE_NAMES)

_PITCH = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_KEY_RE = re.compile(
    r"^\s*([a-g])\s*(#|♯|sharp|b|♭|flat)?\s*"
    r"(major|maj|minor|min|m|moll|dur|ionian|aeolian)?\s*$",
    re.IGNORECASE,
)


def normalize_keyscale(text: object) -> str | None:
    """Return the canonical ACE-Step key ("A minor", "Bb major") for loose input such as "Am", "a min", "Bbm",
    "F#", "C# major" (enharmonics map to the one spelling in KEYSCALES); ``None`` when not a key."""
    if not isinstance(text, str) or not text.strip():
        return None
    raw = text.strip()
    m = _KEY_RE.match(raw)
    if not m:
        return None
    note, acc, mode = m.group(1), m.group(2) or "", m.group(3) or ""
    pitch = _PITCH[note.lower()]
    acc_l = acc.lower()
    if acc_l in ("#", "♯", "sharp"):
        pitch += 1
    elif acc_l in ("b", "♭", "flat"):
        pitch -= 1
    mode_l = mode.lower()
    # "Am" is minor, "AM" and "A" are major: only a lowercase bare "m" means minor.
    if mode == "m" or mode_l in ("minor", "min", "moll", "aeolian"):
        names, suffix = _MINOR_NAMES, "minor"
    else:
        names, suffix = _MAJOR_NAMES, "major"
    return f"{names[pitch % 12]} {suffix}"


def normalize_timesignature(text: object) -> str | None:
    """Return the numerator ACE-Step reads ("2", "3", "4", "6") from "4/4", "3", 6, "6/8"; ``None`` otherwise."""
    if isinstance(text, bool) or text is None:
        return None
    raw = str(text).strip()
    m = re.match(r"^(\d+)\s*(?:/\s*\d+)?$", raw)
    if not m:
        return None
    num = m.group(1).lstrip("0") or "0"
    return num if num in TIME_SIGNATURES else None


def normalize_bpm(value: object) -> int | None:
    """Return the tempo as an int in [30, 300] beats per minute ("120 bpm", 119.6 -> 120); ``None`` outside that
    range or when not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and not BPM_MIN <= value <= BPM_MAX:
        return None  # also an integer of 400 digits, which float() cannot take
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        m = re.search(r"\d+(?:\.\d+)?", str(value))
        if not m:
            return None
        number = float(m.group(0))
    if not math.isfinite(number):  # NaN, and inf (JSON's Infinity, 1e999, a 400-digit string) has no int
        return None
    bpm = int(round(number))
    return bpm if BPM_MIN <= bpm <= BPM_MAX else None


_LANGUAGE_ALIASES = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
_LANGUAGE_ALIASES.update({
    "none": "instrumental", "no vocals": "instrumental", "n/a": "unknown", "": "unknown",
    "mandarin": "zh", "chinese (mandarin)": "zh", "zh-cn": "zh", "zh-tw": "zh", "cantonese": "yue",
    "en-us": "en", "en-gb": "en", "pt-br": "pt", "farsi": "fa", "español": "es", "deutsch": "de",
    "français": "fr", "japanese": "ja", "korean": "ko",
})


def normalize_language(text: object) -> str | None:
    """Return a code from LANGUAGES for a code or an English language name ("English" -> "en",
    "instrumental" -> "instrumental"); ``None`` when unknown to us."""
    if not isinstance(text, str):
        return None
    raw = text.strip().lower()
    if raw in LANGUAGE_NAMES:
        return raw
    if raw in _LANGUAGE_ALIASES:
        return _LANGUAGE_ALIASES[raw]
    head = re.split(r"[-_ ,/(]", raw, maxsplit=1)[0]
    if head in LANGUAGE_NAMES:
        return head
    return _LANGUAGE_ALIASES.get(head)


_SECTION_ALIASES = {
    "prechorus": "Pre-Chorus", "pre chorus": "Pre-Chorus", "postchorus": "Post-Chorus",
    "post chorus": "Post-Chorus", "refrain": "Chorus", "hook": "Chorus", "interlude": "Instrumental",
    "instrumental break": "Instrumental", "break": "Breakdown", "buildup": "Build", "build-up": "Build",
    "build up": "Build", "riser": "Build", "ending": "Outro", "coda": "Outro", "fade out": "Outro",
    "introduction": "Intro", "guitar solo": "Solo", "silent": "Silence", "middle 8": "Bridge",
}


def normalize_section_label(text: object, allowed: tuple[str, ...] | list[str] = SECTION_LABELS) -> str | None:
    """Map a free section name ("verse 2", "[Chorus - anthemic]", "prechorus") onto one of ``allowed``;
    ``None`` when nothing matches."""
    if not isinstance(text, str):
        return None
    raw = text.strip().strip("[]").strip().lower()
    raw = re.sub(r"\s+-\s.*$|\s*[:(].*$", "", raw)  # drop a modifier: "chorus - anthemic", "verse (quiet)"
    raw = re.sub(r"\s*\d+$", "", raw).strip()
    by_lower = {label.lower(): label for label in allowed}
    if raw in by_lower:
        return by_lower[raw]
    alias = _SECTION_ALIASES.get(raw)
    if alias and alias.lower() in by_lower:
        return by_lower[alias.lower()]
    for word in raw.split():
        if word in by_lower:
            return by_lower[word]
    return None
