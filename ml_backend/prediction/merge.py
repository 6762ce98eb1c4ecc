"""Window descriptions back into one song: the step between the model's per-window answers and a
``SongAnnotation``.

A region (a structure section, or a fixed window) may have been cut into several model windows; their texts are
joined back into the region's notes. Song-level lists (genres, instruments, ...) are counted over all windows and
ordered by how many windows named them. BPM, key and time signature come from the music analysis, not the model.
All functions are pure; times are song seconds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from label_config.sidecar import Region, SongAnnotation
from label_config.vocabulary import (
    normalize_bpm, normalize_keyscale, normalize_language, normalize_section_label, normalize_timesignature,
)

from ml_backend.describe.caption import top_items

MAX_LIST_ITEMS = 10  # song-level list fields keep the most frequent items
POSITIONAL_LABELS = ("Intro", "Outro")  # labels of a place in the song, not of the music: not shared by a letter
UNCERTAIN_METER_WEIGHT = 0.5  # a guessed time signature counts as half sure
# Weights of the per-field confidences in the prediction score. Equal to start with: `ls-acestep review` reports how
# well the score, and each field's changes, rank against what annotators really changed, to tune them on real
# reviews (docs/review-and-report.md).
SCORE_WEIGHTS = {"bpm": 1.0, "keyscale": 1.0, "timesignature": 1.0, "section": 1.0, "vocal_language": 1.0}


@dataclass
class RegionPlan:
    """One region of a song and the descriptions of the windows it was cut into, in time order."""

    start: float  # seconds
    end: float  # seconds
    letter: str  # repetition letter from the analysis (A, B, ...)
    descriptions: list  # list[WindowDescription]
    sure_label: str = ""  # a label the analysis is sure of ("Silence"); it wins over the model's


def format_time(seconds: float) -> str:
    """Song seconds as m:ss (for times quoted in region notes)."""
    total = max(0, int(round(seconds)))
    return f"{total // 60}:{total % 60:02d}"


def majority_language(descriptions: list) -> str:
    """The vocal language most windows agree on (a code from label_config.LANGUAGES), "" when none said one.
    "unknown" only wins when no window named a real language or "instrumental"."""
    codes = [normalize_language(d.vocal_language) for d in descriptions if d.ok and d.vocal_language]
    codes = [c for c in codes if c]
    known = [c for c in codes if c != "unknown"]
    pool = known or codes
    if not pool:
        return ""
    counts = Counter(pool)
    return max(counts, key=lambda c: (counts[c], -pool.index(c)))


def region_label(descriptions: list, allowed_labels: tuple[str, ...] | list[str], skip: tuple[str, ...] = ()) -> str:
    """The section label most of the region's windows gave, mapped onto ``allowed_labels`` (labels in ``skip`` not
    counted); "" when none did."""
    labels = [normalize_section_label(d.section_label, allowed_labels) for d in descriptions if d.ok]
    labels = [x for x in labels if x and x not in skip]
    if not labels:
        return ""
    counts = Counter(labels)
    return max(counts, key=lambda x: (counts[x], -labels.index(x)))


def region_vocals(regions: list[RegionPlan]) -> list[bool | None]:
    """Per region, whether the model heard vocals in it: False when most of its described windows said
    "instrumental", True when they named a language, None when they said nothing or "unknown"."""
    out: list[bool | None] = []
    for plan in regions:
        language = majority_language([d for d in plan.descriptions if d.ok])
        out.append(None if language in ("", "unknown") else language != "instrumental")
    return out


def region_notes(descriptions: list) -> str:
    """The region's text: the windows' summaries in time order, then their notable moments ("At 1:05: ...").
    Failed windows contribute nothing, so a model failure leaves a shorter text, not a broken one."""
    summaries, moments = [], []
    for d in descriptions:
        if not d.ok:
            continue
        if d.summary and d.summary.strip() and d.summary.strip() not in summaries:
            summaries.append(d.summary.strip())
        for when, what in d.notable_moments or []:
            if isinstance(what, str) and what.strip():
                moments.append(f"At {format_time(when)}: {what.strip().rstrip('.')}.")
    return "\n".join([" ".join(summaries)] * bool(summaries) + moments)


def window_ok_rate(descriptions: list) -> float:
    """Share of windows the model described (1.0 for a song without windows)."""
    if not descriptions:
        return 1.0
    return sum(1 for d in descriptions if d.ok) / len(descriptions)


def field_confidences(descriptions: list, analysis) -> dict[str, float]:
    """How sure the prediction is of each field, in [0, 1]. From the analysis: a tempo found or not, the key
    confidence, the meter (UNCERTAIN_METER_WEIGHT when guessed). From the model, over the windows it described: the
    share that named a section label, and the share that named the most common vocal language."""
    described = [d for d in descriptions if d.ok]
    languages = [c for c in (normalize_language(d.vocal_language) for d in described if d.vocal_language) if c]
    return {
        "bpm": 1.0 if analysis.bpm else 0.0,
        "keyscale": min(1.0, max(0.0, float(analysis.key_confidence or 0.0))) if analysis.keyscale else 0.0,
        "timesignature": 1.0 if analysis.timesignature_confident else UNCERTAIN_METER_WEIGHT,
        "section": sum(1 for d in described if d.section_label) / len(described) if described else 0.0,
        "vocal_language": Counter(languages).most_common(1)[0][1] / len(described) if languages else 0.0,
    }


def song_score(descriptions: list, analysis) -> float:
    """Prediction score in [0, 1], low where a person is needed most (Label Studio sorts the Data Manager by it,
    lowest first when sorted ascending): the share of windows described (a failed window leaves its region
    without text) times the SCORE_WEIGHTS-weighted mean of ``field_confidences``."""
    confidences = field_confidences(descriptions, analysis)
    mean = sum(SCORE_WEIGHTS[k] * v for k, v in confidences.items()) / sum(SCORE_WEIGHTS.values())
    return round(window_ok_rate(descriptions) * mean, 4)


def build_song(analysis, regions: list[RegionPlan], fallback_labels: list[str],
               allowed_labels: tuple[str, ...] | list[str], caption: str) -> SongAnnotation:
    """Assemble the SongAnnotation of one song.

    The label rule (docs/analysis.md): Silence from the analysis wins; otherwise regions that repeat (share a
    letter) get one label, the one most of their windows gave (a region the model calls Intro or Outro keeps
    that: the same music opens and closes many songs), and where the model gave none the analysis' label
    from repetition and energy (``fallback_labels``, one per region); all mapped onto ``allowed_labels``, the
    config's label set. The time signature is only given when the analysis is sure of it. ``caption`` is the song
    caption already written."""
    all_descriptions = [d for r in regions for d in r.descriptions]
    described = [d for d in all_descriptions if d.ok]
    by_letter: dict[str, list] = {}
    for plan in regions:
        if plan.letter and not plan.sure_label:
            by_letter.setdefault(plan.letter, []).extend(plan.descriptions)
    song_regions = []
    for index, plan in enumerate(regions):
        label = normalize_section_label(plan.sure_label, allowed_labels) if plan.sure_label else ""
        own = region_label(plan.descriptions, allowed_labels)
        if not label and own not in POSITIONAL_LABELS:  # an opening or closing part keeps its own Intro/Outro
            label = region_label(by_letter.get(plan.letter, []), allowed_labels, skip=POSITIONAL_LABELS)
        label = label or own
        if not label and index < len(fallback_labels):
            label = normalize_section_label(fallback_labels[index], allowed_labels) or ""
        song_regions.append(Region(
            start_sec=float(plan.start), end_sec=float(plan.end), section_label=label,
            notes=region_notes(plan.descriptions), id=f"seg{index + 1}",
        ))
    return SongAnnotation(
        caption=caption.strip(),
        genres=top_items([d.genres for d in described], MAX_LIST_ITEMS),
        instruments=top_items([d.instruments for d in described], MAX_LIST_ITEMS),
        effects=top_items([d.effects for d in described], MAX_LIST_ITEMS),
        vocal_characteristics=top_items([d.vocal_characteristics for d in described], MAX_LIST_ITEMS),
        mix_notes=top_items([d.mix_notes for d in described], MAX_LIST_ITEMS),
        bpm=normalize_bpm(analysis.bpm),
        keyscale=normalize_keyscale(analysis.keyscale) or "",
        timesignature=(normalize_timesignature(analysis.timesignature) or "") if analysis.timesignature_confident
        else "",
        language=majority_language(described),
        duration=float(analysis.duration),
        regions=song_regions,
    )
