"""The per-window analysis prompt and tolerant parsing of what the model answers.

Path of one window: ``analysis_prompt(settings)`` is the template the backend hashes into ``model_version``;
each engine fills the window length in with ``window_prompt`` just before asking the model; the model's text comes
back through ``parse_window_output``, which never raises and maps everything onto our vocabulary. Times are in
seconds: the model speaks window-relative, a ``WindowDescription`` holds song time.

A packed window (``WindowRequest.parts``, see ``windows.plan_windows``) holds several regions: its prompt
(``packed_prompt`` template) lists each part's span inside the window and asks for one answer per part;
``parse_packed_output`` maps the answers back onto the parts. A part the answer leaves out gets a failed
description saying so (never a copy of another part's text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from label_config.vocabulary import SECTION_LABELS, normalize_language, normalize_section_label
from ml_backend.describe.types import WindowDescription

WINDOW_SECONDS_PLACEHOLDER = "{window_seconds}"
PART_COUNT_PLACEHOLDER = "{part_count}"  # packed windows: how many parts
PART_LIST_PLACEHOLDER = "{part_list}"  # packed windows: one line per part with its span in the window

# What to listen for, asked alike of one-region and packed windows (the packed prompt adds how parts differ).
_LISTEN_FOR = """\
Describe what you hear as precisely as you can:
- the musical elements: rhythm, groove, harmony, melody, tempo feel and the overall mood;
- the instruments and sounds, with their tones and timbres (bright, warm, distorted, clean, muffled ...);
- the genre and style, and any sub-genre you recognise;
- effects and production: reverb, delay, sidechain pumping, filter sweeps, distortion, and vocal processing such as
  pitch correction, autotune, doubling or vocoder;
- the mix: stereo width, what sits in front, the low end, dynamics and loudness;
- the vocals, if any: gender, register, delivery, harmonies, and the language they are sung in;
"""

DEFAULT_ANALYSIS_PROMPT = """\
You are a music producer and audio engineer listening to a {window_seconds}-second excerpt of a song.
""" + _LISTEN_FOR + """\
- how the elements interact and change over the excerpt (entries, drops, builds, breaks, fills).

Answer with ONE JSON object and nothing else, using exactly these keys:
{
  "section_label": "the song section this excerpt most likely is: Intro, Verse, Pre-Chorus, Chorus, Post-Chorus, \
Bridge, Instrumental, Solo, Breakdown, Build, Drop, Outro or Silence",
  "summary": "two to four sentences on what happens in the excerpt",
  "genre": ["genre", "sub-genre"],
  "instruments": ["instrument with its tone"],
  "effects": ["effect or production technique"],
  "vocal_characteristics": ["vocal trait"],
  "mix_notes": ["mix observation"],
  "vocal_language": "English, Spanish, ... or none when there are no vocals",
  "notable_moments": [{"time_sec": 0.0, "description": "what happens at that moment"}]
}
Times in notable_moments are seconds from the start of this excerpt, between 0 and {window_seconds}.
Use empty lists for what is absent."""

# The prompt of a packed window. Facts about the whole excerpt (genre, instruments, ...) are asked once, the
# section, summary and moments once per part: that keeps the answer within MAX_NEW_TOKENS for two or three parts.
DEFAULT_PACKED_PROMPT = """\
You are a music producer and audio engineer listening to a {window_seconds}-second excerpt of a song. The excerpt
holds {part_count} consecutive parts of the song, which may sound different:
{part_list}
""" + _LISTEN_FOR + """\
- how each part differs from the others (entries, drops, builds, breaks, fills).

Answer with ONE JSON object and nothing else, using exactly these keys:
{
  "genre": ["genre", "sub-genre"],
  "instruments": ["instrument with its tone"],
  "effects": ["effect or production technique"],
  "vocal_characteristics": ["vocal trait"],
  "mix_notes": ["mix observation"],
  "vocal_language": "English, Spanish, ... or none when there are no vocals",
  "parts": [
    {"part": 1, "section_label": "the song section this part most likely is: Intro, Verse, Pre-Chorus, Chorus, \
Post-Chorus, Bridge, Instrumental, Solo, Breakdown, Build, Drop, Outro or Silence",
     "summary": "one to three sentences on what happens in this part only",
     "notable_moments": [{"time_sec": 0.0, "description": "what happens at that moment"}]}
  ]
}
"parts" holds one object for each of the {part_count} parts, in the order listed. Times in notable_moments are
seconds from the start of the excerpt, between 0 and {window_seconds}. Use empty lists for what is absent."""

# Appended to a custom ANALYSIS_PROMPT for packed windows: the custom text says what to describe, this says how
# the answer is split by part.
PACKED_SUFFIX = """

This excerpt holds {part_count} consecutive parts of the song:
{part_list}
Describe each part on its own: answer with ONE JSON object whose "parts" list holds one object per part, in the
order listed, each with "part" (its number) and the keys asked for above; facts about the whole excerpt may stand
beside "parts". Times are seconds from the start of the excerpt."""

# Limits that keep one chatty window from flooding the annotator's text boxes.
MAX_ITEMS = 12  # entries per list field
MAX_ITEM_CHARS = 120
MAX_SUMMARY_CHARS = 1500

# Our keys and the spellings models use for them.
_KEY_ALIASES = {
    "section_label": ("section_label", "section", "label", "part", "section_type"),
    "summary": ("summary", "description", "notes", "analysis", "overview"),
    "genres": ("genre", "genres", "style", "styles"),
    "instruments": ("instruments", "instrumentation", "instrument"),
    "effects": ("effects", "fx", "production", "production_effects", "effect"),
    "vocal_characteristics": ("vocal_characteristics", "vocals", "vocal", "voice", "vocal_traits"),
    "mix_notes": ("mix_notes", "mix", "mixing", "mix_note"),
    "vocal_language": ("vocal_language", "language", "lyrics_language", "lang"),
    "notable_moments": ("notable_moments", "moments", "events", "timeline", "key_moments"),
}
_LIST_FIELDS = ("genres", "instruments", "effects", "vocal_characteristics", "mix_notes")
_EMPTY_ITEMS = {"", "none", "n/a", "na", "null", "nothing", "-", "no", "not applicable", "unknown"}


def analysis_prompt(settings) -> str:
    """The prompt template for every window: ``ANALYSIS_PROMPT`` when set, else ``DEFAULT_ANALYSIS_PROMPT``.
    It may hold ``{window_seconds}``, filled per window by ``window_prompt``."""
    custom = settings.analysis_prompt.strip()
    return custom or DEFAULT_ANALYSIS_PROMPT


def packed_prompt(settings) -> str:
    """The prompt template for packed windows: ``DEFAULT_PACKED_PROMPT``, or a custom ``ANALYSIS_PROMPT`` followed
    by ``PACKED_SUFFIX``. It holds ``{window_seconds}``, ``{part_count}`` and ``{part_list}``."""
    custom = settings.analysis_prompt.strip()
    return custom + PACKED_SUFFIX if custom else DEFAULT_PACKED_PROMPT


def _seconds_text(seconds: float) -> str:
    return f"{max(0.0, seconds):.1f}".rstrip("0").rstrip(".")


def window_prompt(template: str, seconds: float) -> str:
    """The template with the window length (seconds, rounded to 0.1) in place of ``{window_seconds}``.
    Plain replacement, not str.format: the template holds JSON braces."""
    return template.replace(WINDOW_SECONDS_PLACEHOLDER, _seconds_text(seconds))


def part_list(start: float, parts: Sequence[tuple[float, float]]) -> str:
    """One line per part: "- Part 1: 0 to 12.5 s" (seconds from the window's ``start``)."""
    return "\n".join(f"- Part {n}: {_seconds_text(a - start)} to {_seconds_text(b - start)} s"
                     for n, (a, b) in enumerate(parts, 1))


def fill_prompt(template: str, start: float, end: float, parts: Sequence[tuple[float, float]] = ()) -> str:
    """The prompt for one window [start, end) (song seconds): its length, and for a packed window the number
    of parts and their spans inside it."""
    text = window_prompt(template, end - start)
    if len(parts) > 1:
        text = text.replace(PART_COUNT_PLACEHOLDER, str(len(parts)))
        text = text.replace(PART_LIST_PLACEHOLDER, part_list(start, parts))
    return text


def request_prompt(req) -> str:
    """The prompt an engine sends for a ``WindowRequest``."""
    return fill_prompt(req.prompt, req.start, req.end, req.parts)


def describe_answer(text: object, req) -> WindowDescription:
    """The model's answer to a ``WindowRequest`` parsed: per part for a packed window, else as one window."""
    if len(req.parts) > 1:
        return parse_packed_output(text, req.start, req.end, req.parts, req.labels)
    return parse_window_output(text, req.start, req.end, req.labels)


def looks_like_text(text: str, min_words: int = 3) -> bool:
    """True when ``text`` reads like language rather than random bytes: at least ``min_words`` words of two or
    more letters, few replacement or control characters, and mostly letters, spaces and punctuation."""
    if not isinstance(text, str):
        return False
    stripped = text.strip()
    if not stripped:
        return False
    words = re.findall(r"[^\W\d_]{2,}", stripped)
    if len(words) < min_words:
        return False
    bad = sum(1 for c in stripped if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t"))
    if bad > 0.02 * len(stripped):
        return False
    wordish = sum(1 for c in stripped if c.isalpha() or c.isspace() or c in ".,;:!?'\"-()/&%+")
    return wordish >= 0.75 * len(stripped)


# ---------------------------------------------------------------------------------------------------- parsing

def parse_window_output(text: object, start: float, end: float,
                        allowed_labels: Sequence[str] = SECTION_LABELS) -> WindowDescription:
    """Parse one model answer for the window [start, end) (song seconds) into a WindowDescription.

    Tries, in order: the whole text as JSON, a fenced ```json block, the first balanced {...} object, then prose
    (the text becomes the summary; "Genre: ..." style lines fill fields). Never raises: text that is neither JSON
    nor readable prose gives ``ok=False`` with the raw text kept."""
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    try:
        obj = extract_json_object(raw)
        if obj is not None:
            return _from_mapping(obj, start, end, allowed_labels, raw)
        partial = salvage_truncated_json(raw)
        if partial:
            desc = _from_mapping(partial, start, end, allowed_labels, raw)
            desc.error = "model output was cut off (MAX_NEW_TOKENS?); kept the complete fields"
            return desc
        return _from_prose(raw, start, end, allowed_labels)
    except Exception as exc:  # a parser must not sink the song; keep what the model said
        return WindowDescription(raw_text=raw, ok=False, error=f"could not parse model output: {exc}")


# ---------------------------------------------------------------------------------------------------- packed

# Keys models use for the per-part list, and for a part's number inside it.
_PARTS_KEYS = ("parts", "regions", "sections", "segments", "excerpts", "part_descriptions", "descriptions")
_PART_NUMBER_KEYS = ("part", "part_number", "part_index", "index", "number", "id", "n")
_SHARED_FIELDS = ("genres", "instruments", "effects", "vocal_characteristics", "mix_notes", "vocal_language")


def parse_packed_output(text: object, start: float, end: float, parts: Sequence[tuple[float, float]],
                        allowed_labels: Sequence[str] = SECTION_LABELS) -> WindowDescription:
    """Parse the answer to a packed window [start, end) whose ``parts`` are (start, end) song seconds.

    Returns the window's description with one description per part in ``parts``. Accepted answers: an object
    with a list of part objects under "parts" (or "regions", "sections", ...) beside facts about the whole
    excerpt, a bare list of part objects, an object keyed "part 1", "part 2", ..., an answer cut off inside the
    list (the complete parts and the complete fields of the last one are kept), and prose with "Part N:"
    headings. Part objects are matched by their number when they all carry a distinct valid one, else in order.
    Facts about the whole excerpt go to the first described part (song-level lists count each window once),
    the vocal language to every described part without its own. A part the answer does not describe gets
    ``ok=False`` and an error that says so; moments are clamped into their part. Never raises."""
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    spans = [(float(a), float(b)) for a, b in parts]
    try:
        found = _packed_items(raw)
        if found is None:
            descs = _packed_prose(raw, spans, allowed_labels)
        else:
            items, shared, cut = found
            descs = _assign_parts(items, shared, cut, raw, start, end, spans, allowed_labels)
    except Exception as exc:  # a parser must not sink the song
        descs = [WindowDescription(raw_text=raw, ok=False, error=f"could not parse model output: {exc}")
                 for _ in spans]
    errors = [d.error for d in descs if d.error]
    window = WindowDescription(raw_text=raw, ok=any(d.ok for d in descs), parts=descs)
    window.error = _clip("; ".join(dict.fromkeys(errors)), 500) if errors else ""
    return window


def _packed_items(raw: str) -> tuple[list, dict, bool] | None:
    """(part objects, the answer's other keys, whether it was cut off), or None when the answer holds no JSON.
    A JSON object without per-part entries gives no items and its keys as the shared ones."""
    listed = _json_list(raw)
    if listed is not None:
        return [x for x in listed if isinstance(x, dict)], {}, False
    obj = extract_json_object(raw)
    if obj is not None:
        items, shared = _split_parts(obj)
        if items:
            return items, shared, False
    # a cut-off answer's first balanced object is its first part, not the answer: salvage the list instead
    return _salvage_packed(raw) or ((items, shared, False) if obj is not None else None)


def _json_list(raw: str) -> list | None:
    """The answer as a JSON list of objects (whole text or a fenced block), else None."""
    candidates = [raw.strip().lstrip("\ufeff")] + re.findall(r"```(?:json|JSON)?\s*(.*?)```", raw, flags=re.DOTALL)
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate.startswith("["):
            continue
        for attempt in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
            try:
                value = json.loads(attempt)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, list) and any(isinstance(x, dict) for x in value):
                return value
    return None


def _split_parts(obj: dict) -> tuple[list[dict], dict]:
    """The per-part objects of an answer object and its remaining keys."""
    lowered = {_norm_key(k): (k, v) for k, v in obj.items() if isinstance(k, str)}
    for key in _PARTS_KEYS:
        if key not in lowered:
            continue
        original, value = lowered[key]
        shared = {k: v for k, v in obj.items() if k != original}
        if isinstance(value, list) and any(isinstance(x, dict) for x in value):
            return [x for x in value if isinstance(x, dict)], shared
        if isinstance(value, dict):  # {"1": {...}, "2": {...}}
            keyed = _numbered_objects(value)
            if keyed:
                return keyed, shared
    keyed = _numbered_objects(obj)  # {"part 1": {...}, "part 2": {...}, "genre": [...]}
    if keyed:
        numbered = {k for k in obj if isinstance(k, str) and _key_number(k) is not None and isinstance(obj[k], dict)}
        return keyed, {k: v for k, v in obj.items() if k not in numbered}
    return [], obj


def _key_number(key: str) -> int | None:
    m = re.fullmatch(r"\s*(?:part|region|section|segment)?[\s_#-]*(\d{1,3})\s*", key, flags=re.IGNORECASE)
    return int(m.group(1)) if m else None


def _numbered_objects(obj: dict) -> list[dict]:
    """Objects under keys such as "part 1", "Part_2" or "3", in number order, each with its number as "part"."""
    found = []
    for key, value in obj.items():
        number = _key_number(key) if isinstance(key, str) else None
        if number is not None and isinstance(value, dict):
            found.append((number, {"part": number, **value}))
    return [v for _, v in sorted(found, key=lambda x: x[0])]


def _salvage_packed(raw: str) -> tuple[list, dict, bool] | None:
    """An answer cut off inside its "parts" list: the complete part objects, the complete fields of the last
    one, and the fields before the list. None when there is no such list."""
    m = re.search(r'"(' + "|".join(_PARTS_KEYS) + r')"\s*:\s*\[', raw, flags=re.IGNORECASE)
    if not m:
        return None
    shared = salvage_truncated_json(raw[:m.start()], min_keys=1)
    items: list[dict] = []
    pos = m.end()
    while True:
        brace = raw.find("{", pos)
        if brace == -1:
            break
        close = _matching_brace(raw, brace)
        if close is None:  # the object generation stopped in
            last = salvage_truncated_json(raw[brace:], min_keys=1)
            if last:
                items.append({**last, "_cut": True})
            break
        obj = _loads_object(raw[brace:close + 1])
        if obj is not None:
            items.append(obj)
        pos = close + 1
    return items, shared, True


def _part_number(item: dict) -> int | None:
    low = {_norm_key(k): v for k, v in item.items() if isinstance(k, str)}
    for key in _PART_NUMBER_KEYS:
        if key in low:
            value = low[key]
            if isinstance(value, bool):
                return None
            if isinstance(value, (int, float)) and float(value).is_integer():
                return int(value)
            if isinstance(value, str):
                return _key_number(value)
            return None
    return None


def _assign_parts(items: list[dict], shared: dict, cut: bool, raw: str, start: float, end: float,
                  spans: list[tuple[float, float]], allowed: Sequence[str]) -> list[WindowDescription]:
    """One description per span from the part objects (see parse_packed_output)."""
    count = len(spans)
    slots: list[dict | None] = [None] * count
    numbers = [_part_number(item) for item in items]
    if items and all(n is not None and 1 <= n <= count for n in numbers) and len(set(numbers)) == len(numbers):
        for number, item in zip(numbers, items):
            slots[number - 1] = item
    else:
        for k, item in enumerate(items[:count]):
            slots[k] = item
    whole = not items and bool(shared)
    descs = []
    for k, ((a, b), item) in enumerate(zip(spans, slots)):
        where = f"part {k + 1} ({a:.1f}-{b:.1f} s)"
        if item is None:
            if whole:
                why = f"the answer described the excerpt as a whole, not its {count} parts one by one"
            elif cut:
                why = "the answer was cut off before it (raise MAX_NEW_TOKENS)"
            else:
                why = f"the answer described {len(items)} of {count} parts"
            descs.append(WindowDescription(raw_text=raw, ok=False, error=f"{where} not described: {why}"))
            continue
        desc = _from_mapping(item, start, end, allowed, raw)
        desc.notable_moments = [(min(max(t, a), b), what) for t, what in desc.notable_moments]
        if item.get("_cut"):
            desc.error = f"{where}: the answer was cut off in it (MAX_NEW_TOKENS?); kept the complete fields"
        descs.append(desc)
    if len(items) > count:
        first = next((d for d in descs if d.ok), None)
        if first is not None and not first.error:
            first.error = f"the answer described {len(items)} parts where {count} were asked; kept {count}"
    _share(shared, descs, start, end, allowed, raw)
    return descs


def _share(shared: dict, descs: list[WindowDescription], start: float, end: float, allowed: Sequence[str],
           raw: str) -> None:
    """Put the facts about the whole excerpt onto the described parts: the lists onto the first one, the vocal
    language onto each without its own."""
    described = [d for d in descs if d.ok]
    if not shared or not described:
        return
    facts = _from_mapping(shared, start, end, allowed, raw)
    first = described[0]
    for name in _LIST_FIELDS:
        merged = as_list(list(getattr(facts, name)) + list(getattr(first, name)))
        setattr(first, name, merged)
    for d in described:
        if not d.vocal_language:
            d.vocal_language = facts.vocal_language


def _packed_prose(raw: str, spans: list[tuple[float, float]], allowed: Sequence[str]) -> list[WindowDescription]:
    """Prose with "Part N" headings, one chunk per part; prose without them cannot be split by part."""
    count = len(spans)
    if not looks_like_text(raw):
        return [WindowDescription(raw_text=raw, ok=False, error="model output is neither JSON nor readable text")
                for _ in spans]
    chunks: dict[int, list[str]] = {}
    current = None
    for line in raw.splitlines():
        m = re.match(r"^\W*(?:part|region|section)\s*(\d{1,3})\b\s*(?:\([^)]*\))?\s*[:.\-–]*\s*(.*)$", line,
                     flags=re.IGNORECASE)
        if m and 1 <= int(m.group(1)) <= count:
            current = int(m.group(1))
            chunks.setdefault(current, [])
            line = m.group(2)
        if current is not None:
            chunks[current].append(line)
    descs = []
    for k, (a, b) in enumerate(spans, 1):
        where = f"part {k} ({a:.1f}-{b:.1f} s)"
        body = "\n".join(chunks.get(k, [])).strip()
        if not chunks:
            descs.append(WindowDescription(raw_text=raw, ok=False, error=f"{where} not described: the answer is "
                                           "prose that does not describe the parts one by one"))
        elif not body:
            descs.append(WindowDescription(raw_text=raw, ok=False, error=f"{where} not described in the answer"))
        else:
            desc = _from_prose(body, a, b, allowed)
            desc.raw_text = raw
            if not desc.ok:
                desc.error = f"{where}: {desc.error}"
            descs.append(desc)
    return descs


def extract_json_object(text: str) -> dict | None:
    """The first JSON object in ``text``: whole text, fenced block, or first balanced {...}; ``None`` if none."""
    stripped = text.strip().lstrip("\ufeff")
    candidates = [stripped]
    candidates += re.findall(r"```(?:json|JSON)?\s*(.*?)```", text, flags=re.DOTALL)
    fence_open = re.search(r"```(?:json|JSON)?\s*(\{.*)$", text, flags=re.DOTALL)  # a fence the model never closed
    if fence_open:
        candidates.append(fence_open.group(1))
    for candidate in candidates:
        obj = _loads_object(candidate.strip())
        if obj is not None:
            return obj
    for chunk in _balanced_objects(text):
        obj = _loads_object(chunk)
        if obj is not None:
            return obj
    return None


def salvage_truncated_json(text: str, min_keys: int = 2) -> dict:
    """The "key": "string" and "key": ["strings"] pairs of a JSON object that was cut off before its end
    (generation hit the token limit); an unterminated last string is kept. Empty when fewer than ``min_keys``."""
    brace = text.find("{")
    if brace == -1:
        return {}
    body = text[brace:]
    found: dict = {}
    for m in re.finditer(r'"([A-Za-z_ ]{2,40})"\s*:\s*(?:"((?:[^"\\]|\\.)*)"?|\[([^\]]*)\]?)', body):
        key, string, items = m.group(1), m.group(2), m.group(3)
        if key in found:
            continue
        if string is not None:
            found[key] = _unescape(string)
        elif items is not None:
            found[key] = [_unescape(x) for x in re.findall(r'"((?:[^"\\]|\\.)*)"', items)]
    return found if len(found) >= min_keys else {}


def _unescape(text: str) -> str:
    """A JSON string body decoded; the text itself when its escapes are broken."""
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


def _loads_object(text: str) -> dict | None:
    """json.loads that accepts only an object, also after removing trailing commas; ``None`` on failure."""
    if not text.startswith("{"):
        return None
    for attempt in (text, re.sub(r",\s*([}\]])", r"\1", text)):
        try:
            obj = json.loads(attempt)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _balanced_objects(text: str, limit: int = 20) -> Iterable[str]:
    """Yield up to ``limit`` balanced {...} substrings, outermost first, ignoring braces inside JSON strings."""
    found = 0
    pos = text.find("{")
    while pos != -1 and found < limit:
        end = _matching_brace(text, pos)
        if end is None:
            pos = text.find("{", pos + 1)
            continue
        found += 1
        yield text[pos:end + 1]
        pos = text.find("{", pos + 1)


def _matching_brace(text: str, open_at: int) -> int | None:
    """Index of the brace closing the one at ``open_at``, string- and escape-aware; ``None`` if unbalanced."""
    depth, in_string, escaped = 0, False, False
    for i in range(open_at, len(text)):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _from_mapping(obj: dict, start: float, end: float, allowed: Sequence[str], raw: str) -> WindowDescription:
    """Build a description from a parsed JSON object, tolerating alias keys and loose value types."""
    lowered = {_norm_key(k): v for k, v in obj.items() if isinstance(k, str)}

    def pick(field: str):
        for alias in _KEY_ALIASES[field]:
            if alias in lowered:
                return lowered[alias]
        return None

    label = normalize_section_label(_as_text(pick("section_label")), tuple(allowed)) or ""
    language = _language_code(pick("vocal_language"))
    desc = WindowDescription(
        section_label=label,
        summary=_clip(_as_text(pick("summary")), MAX_SUMMARY_CHARS),
        vocal_language=language,
        notable_moments=parse_moments(pick("notable_moments"), start, end),
        raw_text=raw,
    )
    for name in _LIST_FIELDS:
        setattr(desc, name, as_list(pick(name)))
    return desc


def _from_prose(raw: str, start: float, end: float, allowed: Sequence[str]) -> WindowDescription:
    """Free text: keep readable prose as the summary and pick up "Key: value" lines; garbage gives ok=False."""
    if not looks_like_text(raw):
        return WindowDescription(raw_text=raw, ok=False, error="model output is neither JSON nor readable text")
    fields: dict[str, str] = {}
    prose = []
    for line in raw.splitlines():
        m = re.match(r"^\s*[-*#>\s]*\**\s*([A-Za-z][A-Za-z _-]{1,30}?)\s*\**\s*:\s*(.+)$", line)
        field = None
        if m:
            key = _norm_key(m.group(1))
            field = next((f for f, aliases in _KEY_ALIASES.items() if key in aliases), None)
        if field and field not in fields:
            fields[field] = m.group(2).strip().strip("*").strip()
        else:
            prose.append(line)
    summary = fields.get("summary") or re.sub(r"\s+", " ", "\n".join(prose)).strip()
    desc = WindowDescription(
        section_label=normalize_section_label(fields.get("section_label", ""), tuple(allowed)) or "",
        summary=_clip(summary, MAX_SUMMARY_CHARS),
        vocal_language=_language_code(fields.get("vocal_language")),
        raw_text=raw,
    )
    for name in _LIST_FIELDS:
        if name in fields:
            setattr(desc, name, as_list(fields[name]))
    return desc


def as_list(value: object) -> list[str]:
    """A clean list of short strings from a list or a "a, b; c" string; drops "none"-like items and duplicates
    (case-insensitive), keeps the first spelling and order, at most MAX_ITEMS items of MAX_ITEM_CHARS."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list = re.split(r"[,;\n]|\s+/\s+", value)
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, dict):  # {"name": "guitar", ...}: take the first text value
                item = next((v for v in item.values() if isinstance(v, str)), "")
            items.append(item)
    else:
        items = [value]
    out, seen = [], set()
    for item in items:
        text = _clip(re.sub(r"\s+", " ", _as_text(item)).strip(" .-*\"'"), MAX_ITEM_CHARS)
        if text.lower() in _EMPTY_ITEMS or text.lower() in seen:
            continue
        seen.add(text.lower())
        out.append(text)
        if len(out) == MAX_ITEMS:
            break
    return out


def parse_moments(value: object, start: float, end: float) -> list[tuple[float, str]]:
    """Notable moments as (song seconds, text): window-relative times clamped into [0, end - start] and shifted
    by ``start``; accepts dicts with time_sec/time/timestamp/t, "0:12" or "12s" strings, and [time, text] pairs.
    Sorted by time; entries without a readable time or text are dropped."""
    if not isinstance(value, (list, tuple)):
        return []
    length = max(0.0, end - start)
    out = []
    for item in value[:MAX_ITEMS * 2]:
        when, what = None, ""
        if isinstance(item, dict):
            low = {_norm_key(k): v for k, v in item.items() if isinstance(k, str)}
            for key in ("time_sec", "time", "timestamp", "t", "seconds", "time_s", "start", "at"):
                if key in low:
                    when = parse_seconds(low[key])
                    break
            for key in ("description", "event", "text", "what", "note", "desc"):
                if key in low:
                    what = _as_text(low[key])
                    break
        elif isinstance(item, (list, tuple)) and len(item) >= 2:
            when, what = parse_seconds(item[0]), _as_text(item[1])
        what = _clip(re.sub(r"\s+", " ", what).strip(), MAX_ITEM_CHARS * 2)
        if when is None or not what:
            continue
        out.append((round(float(start) + min(max(when, 0.0), length), 3), what))
    out.sort(key=lambda m: m[0])
    return out[:MAX_ITEMS]


def parse_seconds(value: object) -> float | None:
    """Seconds from 12, 12.5, "12.5", "12s", "0:12", "1:02.5"; ``None`` when not a finite time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        raw = value.strip().lower()
        m = re.match(r"^(\d+):(\d{1,2}(?:\.\d+)?)", raw)
        if m:
            seconds = int(m.group(1)) * 60 + float(m.group(2))
        else:
            m = re.match(r"^(-?\d+(?:\.\d+)?)", raw)
            if not m:
                return None
            seconds = float(m.group(1))
    else:
        return None
    return seconds if seconds == seconds and abs(seconds) != float("inf") else None


def _language_code(value: object) -> str:
    """A code from LANGUAGES for the model's language answer ("English", "en", "none"), else ""."""
    if isinstance(value, list):
        value = value[0] if value else ""
    text = _as_text(value).strip()
    if not text:
        return ""
    return normalize_language(text) or ""


def _as_text(value: object) -> str:
    """A string for any JSON value: lists are joined with ", ", None is ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(_as_text(v) for v in value if v is not None)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_as_text(v)}" for k, v in value.items())
    return str(value)


def _norm_key(key: str) -> str:
    return re.sub(r"[\s-]+", "_", key.strip().lower())


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word boundary when one is near."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.7 else cut).rstrip(" ,;") + "…"
