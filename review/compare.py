"""How far one annotation moved from the prediction it started from, field by field.

Both result lists are read with the converter's reader (``converters.results.song_from_results``), so regions are
paired with their per-region texts by result id exactly as the dataset will see them, and song-level values are
normalised the same way (a human who typed "Am" for a predicted "A minor" changed nothing).

Measures come from maintained packages: boundary detection and frame labels from mir_eval, word error rate from
jiwer, word-level text similarity from rapidfuzz. All times are in seconds. Every function here is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from converters.results import song_from_results
from label_config import names
from label_config.sidecar import SongAnnotation

BOUNDARY_WINDOWS = (0.5, 3.0)  # seconds: MIREX's two hit-rate windows (a beat at most; a bar or so)
FRAME_SECONDS = 0.1  # label-agreement grid; finer than any boundary a person places by ear
MAX_FRAMES = 200_000  # label-agreement frames at most (5.5 h at FRAME_SECONDS): a region ending at 1e9 s in an
# export would otherwise ask for billions of frames; a longer span gets a coarser grid
BPM_TOLERANCE = 1.0  # BPM: within one beat per minute counts as accepted (the control holds integers)
SONG_TEXT_FIELDS = (names.CAPTION, names.GENRE, names.INSTRUMENTS, names.EFFECTS, names.VOCAL_CHARACTERISTICS,
                    names.MIX_NOTES)
CHOICE_FIELDS = (names.BPM, names.KEYSCALE, names.TIMESIGNATURE, names.VOCAL_LANGUAGE)
TEXT_FIELDS = (names.SEGMENT_NOTES, *SONG_TEXT_FIELDS)
_SONG_ATTR = {names.CAPTION: "caption", names.GENRE: "genres", names.INSTRUMENTS: "instruments",
              names.EFFECTS: "effects", names.VOCAL_CHARACTERISTICS: "vocal_characteristics",
              names.MIX_NOTES: "mix_notes", names.BPM: "bpm", names.KEYSCALE: "keyscale",
              names.TIMESIGNATURE: "timesignature", names.VOCAL_LANGUAGE: "language"}
_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")  # kana and CJK ideographs
_SECTION_TAG = re.compile(r"^\s*\[[^\]\n]*\]\s*$", re.MULTILINE)  # [Verse], [Chorus] lines in lyrics

# Choice outcomes: what the human did with a song-level value.
ACCEPTED, CHANGED, ADDED, REMOVED = "accepted", "changed", "added", "removed"


@dataclass
class RegionChange:
    """Timeline changes of one task. Hit rates are boundary-detection F-measures (predicted boundaries against
    the final ones, song start and end left out); ``mean_shift`` is the mean distance in seconds between the
    boundaries matched within the widest window (None when none matched)."""

    predicted: int
    final: int
    hit_rate: dict[str, float]  # "0.5" / "3.0" -> F-measure in [0, 1]
    precision: dict[str, float]
    recall: dict[str, float]
    mean_shift: float | None
    added: int  # regions in the annotation whose id the prediction does not have
    deleted: int  # predicted regions the annotation no longer has
    relabelled: int  # regions kept (same id) with another section label
    label_agreement: float | None  # share of FRAME_SECONDS frames with the same section label (None: no regions)


@dataclass
class TextChange:
    """One text field: word-level similarity in [0, 1] (1 = the same words in the same order) and whether the
    text was kept exactly (whitespace at the ends aside). For per-region notes: the mean over the regions both
    sides have, and ``kept`` is the share of those regions whose notes were kept."""

    similarity: float
    kept: float  # 1.0 / 0.0 for a song-level text; a share for per-region notes
    compared: int = 1  # texts compared (regions, for notes)
    predicted: str = ""  # song-level texts only (the report shows the most changed ones)
    final: str = ""


@dataclass
class LyricsChange:
    """Lyrics: word error rate of the predicted words against the final ones (section tags and punctuation left
    out, case ignored); for lyrics in a script written without spaces (Chinese, Japanese) the character error
    rate, and ``unit`` says "character". ``wer`` is None when the final lyrics have no words (no reference to
    measure against); ``kept`` says whether the words are the same."""

    wer: float | None
    kept: bool
    predicted_words: int
    final_words: int
    unit: str = "word"


@dataclass
class ChoiceChange:
    """A song-level value: accepted as predicted, changed, added (nothing predicted) or removed."""

    outcome: str
    predicted: object
    final: object


@dataclass
class TaskChange:
    """Everything that changed between one prediction and one annotation, and one number for how much."""

    regions: RegionChange | None
    texts: dict[str, TextChange] = field(default_factory=dict)
    lyrics: LyricsChange | None = None
    choices: dict[str, ChoiceChange] = field(default_factory=dict)
    amount: float = 0.0  # in [0, 1]: the mean of the per-field change shares (see change_amount)
    warnings: list[str] = field(default_factory=list)


MAX_WORDS = 5000  # per text: a song's lyrics run to a few hundred words; the measures cost words x words
MAX_CHARACTERS = 20000  # the same bound for lyrics measured by character
MAX_SHOWN_CHARACTERS = 2000  # of a song-level text kept in review.json (a caption is a few hundred)


def words(text: str) -> list[str]:
    """The lower-cased words of a text (letters, digits and apostrophes inside words), the first MAX_WORDS."""
    return _WORD.findall(text[:MAX_WORDS * 20].lower())[:MAX_WORDS]


def text_similarity(predicted: str, final: str) -> float:
    """Word-level similarity in [0, 1]: rapidfuzz's normalised Indel similarity of the two word sequences (the
    share of words kept in order; two empty texts are identical)."""
    from rapidfuzz.distance import Indel

    a, b = words(predicted), words(final)
    if not a and not b:
        return 1.0
    return float(Indel.normalized_similarity(a, b))


def lyrics_words(text: str) -> str:
    """Lyrics as plain words for WER: section tag lines ([Verse]) dropped, lower case, punctuation removed."""
    return " ".join(words(_SECTION_TAG.sub(" ", text)))


def compare_lyrics(predicted: str, final: str) -> LyricsChange | None:
    """WER (jiwer) of the predicted lyrics against the final ones, CER for scripts written without spaces; None
    when neither side has words."""
    import jiwer

    hyp, ref = lyrics_words(predicted), lyrics_words(final)
    if not hyp and not ref:
        return None
    change = LyricsChange(wer=None, kept=hyp == ref, predicted_words=len(hyp.split()), final_words=len(ref.split()))
    if _UNSPACED.search(hyp + ref):  # a "word" would be a whole line: count characters instead
        change.unit = "character"
        hyp, ref = hyp.replace(" ", "")[:MAX_CHARACTERS], ref.replace(" ", "")[:MAX_CHARACTERS]
        change.wer = float(jiwer.cer(ref, hyp)) if ref else None
    elif ref:  # jiwer needs a non-empty reference
        change.wer = float(jiwer.wer(ref, hyp))
    return change


def _intervals(song: SongAnnotation) -> tuple[np.ndarray, list[str]]:
    regions = [r for r in song.regions if r.end_sec > r.start_sec]
    intervals = np.array([[r.start_sec, r.end_sec] for r in regions], dtype=float).reshape(-1, 2)
    return intervals, [r.section_label or "(none)" for r in regions]


def _boundaries(intervals: np.ndarray) -> np.ndarray:
    """Interior boundaries: every region start and end, without the first and last (song start and end)."""
    import mir_eval

    if not len(intervals):
        return np.zeros(0)
    return mir_eval.util.intervals_to_boundaries(intervals)[1:-1]


def compare_regions(predicted: SongAnnotation, final: SongAnnotation) -> RegionChange | None:
    """Timeline changes; None when neither side has a region."""
    import mir_eval

    if not predicted.regions and not final.regions:
        return None
    est, est_labels = _intervals(predicted)
    ref, ref_labels = _intervals(final)
    ref_b, est_b = _boundaries(ref), _boundaries(est)
    hit, prec, rec = {}, {}, {}
    for window in BOUNDARY_WINDOWS:
        key = str(window)
        if not len(ref_b) and not len(est_b):  # one region on both sides: nothing to find, nothing invented
            prec[key] = rec[key] = hit[key] = 1.0
        elif not len(ref_b) or not len(est_b):
            prec[key] = rec[key] = hit[key] = 0.0
        else:
            # detection() validates and trims the same way; called on the intervals so mir_eval does both
            p, r, f = mir_eval.segment.detection(ref, est, window=window, trim=True)
            prec[key], rec[key], hit[key] = float(p), float(r), float(f)
    shift = None
    if len(ref_b) and len(est_b):
        matched = mir_eval.util.match_events(ref_b, est_b, max(BOUNDARY_WINDOWS))
        if matched:
            shift = float(np.mean([abs(ref_b[i] - est_b[j]) for i, j in matched]))
    predicted_ids = {r.id for r in predicted.regions}
    final_by_id = {r.id: r for r in final.regions}
    relabelled = sum(1 for r in predicted.regions
                     if r.id in final_by_id and final_by_id[r.id].section_label != r.section_label)
    return RegionChange(
        predicted=len(predicted.regions), final=len(final.regions), hit_rate=hit, precision=prec, recall=rec,
        mean_shift=shift, added=sum(1 for r in final.regions if r.id not in predicted_ids),
        deleted=sum(1 for r in predicted.regions if r.id not in final_by_id), relabelled=relabelled,
        label_agreement=label_agreement(est, est_labels, ref, ref_labels),
    )


def label_agreement(est: np.ndarray, est_labels: list[str], ref: np.ndarray, ref_labels: list[str]) -> float | None:
    """Share of FRAME_SECONDS frames (coarser past MAX_FRAMES; over the span either side covers) that carry the
    same section label on both sides; a frame outside every region on one side and inside one on the other
    disagrees. mir_eval assigns the labels to the frames."""
    import mir_eval

    spans = [x for x in (est, ref) if len(x)]
    if not spans:
        return None
    start = min(float(x[:, 0].min()) for x in spans)
    end = max(float(x[:, 1].max()) for x in spans)
    if end <= start:
        return None
    step = max(FRAME_SECONDS, (end - start) / MAX_FRAMES)
    times = np.arange(start, end, step) + step / 2
    a = mir_eval.util.interpolate_intervals(est, est_labels, times) if len(est) else [None] * len(times)
    b = mir_eval.util.interpolate_intervals(ref, ref_labels, times) if len(ref) else [None] * len(times)
    return float(np.mean([x == y for x, y in zip(a, b)]))


def compare_notes(predicted: SongAnnotation, final: SongAnnotation) -> TextChange | None:
    """Per-region notes of the regions both sides have (paired by region id); regions where neither side has
    notes are left out. None when no region is left."""
    final_by_id = {r.id: r for r in final.regions}
    pairs = [(r.notes, final_by_id[r.id].notes) for r in predicted.regions
             if r.id in final_by_id and (r.notes.strip() or final_by_id[r.id].notes.strip())]
    if not pairs:
        return None
    sims = [text_similarity(a, b) for a, b in pairs]
    kept = [a.strip() == b.strip() for a, b in pairs]
    return TextChange(similarity=float(np.mean(sims)), kept=float(np.mean(kept)), compared=len(pairs))


def _song_text(song: SongAnnotation, control: str) -> str:
    value = getattr(song, _SONG_ATTR[control])
    return "\n".join(value) if isinstance(value, list) else (value or "")


def compare_text(predicted: str, final: str) -> TextChange | None:
    """A song-level text; None when both sides are empty."""
    if not predicted.strip() and not final.strip():
        return None
    return TextChange(similarity=text_similarity(predicted, final), kept=float(predicted.strip() == final.strip()),
                      predicted=predicted[:MAX_SHOWN_CHARACTERS], final=final[:MAX_SHOWN_CHARACTERS])


def compare_choice(control: str, predicted: object, final: object) -> ChoiceChange | None:
    """A song-level value (normalised by the converter's reader); None when both sides are empty."""
    empty_p, empty_f = predicted in (None, ""), final in (None, "")
    if empty_p and empty_f:
        return None
    if empty_p:
        outcome = ADDED
    elif empty_f:
        outcome = REMOVED
    elif control == names.BPM:
        outcome = ACCEPTED if abs(float(predicted) - float(final)) <= BPM_TOLERANCE else CHANGED
    else:
        outcome = ACCEPTED if predicted == final else CHANGED
    return ChoiceChange(outcome=outcome, predicted=predicted, final=final)


def field_changes(change: TaskChange) -> dict[str, float]:
    """Each field's change share in [0, 1], for the fields both sides have: boundaries (1 - the mean of the two hit
    rates, so a small move counts half), labels (1 - frame agreement), each text (1 - similarity), lyrics (WER
    capped at 1; 1 when all words were removed) and each song-level value (0 accepted, 1 otherwise)."""
    parts: dict[str, float] = {}
    if change.regions is not None:
        parts["boundaries"] = 1.0 - float(np.mean(list(change.regions.hit_rate.values())))
        if change.regions.label_agreement is not None:
            parts["labels"] = 1.0 - change.regions.label_agreement
    for control, text in change.texts.items():
        parts[control] = 1.0 - text.similarity
    if change.lyrics is not None:
        parts[names.LYRICS] = 1.0 if change.lyrics.wer is None else min(1.0, change.lyrics.wer)
    for control, choice in change.choices.items():
        parts[control] = 0.0 if choice.outcome == ACCEPTED else 1.0
    return parts


def change_amount(change: TaskChange) -> float:
    """One number in [0, 1] for how much a person changed: the mean of ``field_changes`` (0 when nothing was
    compared)."""
    parts = field_changes(change)
    return float(np.mean(list(parts.values()))) if parts else 0.0


def compare_results(predicted_result: list, final_result: list) -> TaskChange:
    """Compare a prediction's result list with an annotation's, field by field."""
    predicted = song_from_results(predicted_result)
    final = song_from_results(final_result)
    change = TaskChange(regions=compare_regions(predicted.song, final.song),
                        warnings=[f"annotation: {w}" for w in final.warnings])
    notes = compare_notes(predicted.song, final.song)
    if notes is not None:
        change.texts[names.SEGMENT_NOTES] = notes
    for control in SONG_TEXT_FIELDS:
        text = compare_text(_song_text(predicted.song, control), _song_text(final.song, control))
        if text is not None:
            change.texts[control] = text
    change.lyrics = compare_lyrics(predicted.song.effective_lyrics_text(), final.song.effective_lyrics_text())
    for control in CHOICE_FIELDS:
        attr = _SONG_ATTR[control]
        choice = compare_choice(control, getattr(predicted.song, attr), getattr(final.song, attr))
        if choice is not None:
            change.choices[control] = choice
    change.amount = change_amount(change)
    return change


def describe(change: TaskChange) -> list[str]:
    """Short human lines for what changed (for the most-changed table)."""
    lines = []
    r = change.regions
    if r is not None:
        if r.added or r.deleted:
            lines.append(f"regions: {r.added} added, {r.deleted} deleted")
        if r.relabelled:
            lines.append(f"{r.relabelled} region(s) relabelled")
        if r.hit_rate["0.5"] < 1.0 and r.mean_shift is not None and r.mean_shift > 0:
            lines.append(f"boundaries moved (mean {r.mean_shift:.2f} s)")
    for control, text in change.texts.items():
        if text.kept < 1.0:
            lines.append(f"{control} rewritten (similarity {text.similarity:.2f})")
    if change.lyrics is not None and not change.lyrics.kept:
        name = "CER" if change.lyrics.unit == "character" else "WER"
        wer = "no final words" if change.lyrics.wer is None else f"{name} {change.lyrics.wer:.2f}"
        lines.append(f"lyrics changed ({wer})")
    for control, choice in change.choices.items():
        if choice.outcome != ACCEPTED:
            lines.append(f"{control}: {choice.predicted or '—'} → {choice.final or '—'}")
    return lines
