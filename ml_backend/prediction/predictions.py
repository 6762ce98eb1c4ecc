"""Last step of a song's way through the backend: a ``SongAnnotation`` becomes the Label Studio result list that
the project's label config can hold.

The config arrives with every request. It is parsed with label-studio-sdk's ``LabelInterface``; the Audio object
and the controls are found by the shipped names (``label_config.names``), so a config with only some of the
controls gets only those results. Shapes follow Label Studio 1.23 (see docs/backend.md): a region is a ``labels``
result plus per-region ``textarea`` results sharing one ``id``; song-level fields are ``textarea``, ``number``
and ``choices`` results without start/end. Times are in seconds.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from label_config import names as n
from label_config.sidecar import SongAnnotation
from label_config.vocabulary import (
    normalize_keyscale, normalize_language, normalize_section_label, normalize_timesignature,
)

AUDIO_TAGS = ("Audio", "AudioPlus")  # AudioPlus: Label Studio's legacy alias of Audio
UNDEFINED_KEY = "$undefined$"  # where Label Studio puts files uploaded without a column name
TIME_DECIMALS = 3  # region times are rounded to milliseconds


class ConfigError(ValueError):
    """The label config cannot take predictions from this backend; the message says what to change."""


@dataclass(frozen=True)
class ConfigTargets:
    """What one label config can hold: the Audio object and the shipped controls attached to it."""

    audio_name: str  # name of the <Audio> object, the to_name of every result
    audio_key: str  # key of the audio reference in task["data"] ("audio" for value="$audio")
    section: str = ""  # name of the <Labels> control, "" when the config has none
    section_labels: tuple[str, ...] = ()
    region_texts: tuple[str, ...] = ()  # per-region TextAreas present (segment_notes, segment_lyrics)
    song_texts: tuple[str, ...] = ()  # song-level TextAreas present (caption, genre, ...)
    bpm_range: tuple[float, float] | None = None  # (min, max) of the <Number name="bpm">; None when absent
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Choices name -> values offered
    config_hash: str = ""  # sha256 of the XML, part of the prediction cache key


def config_hash(label_config: str) -> str:
    """Hex sha256 of the label config text."""
    return hashlib.sha256(label_config.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=32)
def parse_config(label_config: str) -> ConfigTargets:
    """Find the Audio object and the shipped controls in a label config; raise ConfigError when there is no
    Audio object or the XML cannot be read. Cached: Label Studio sends the same config with every request."""
    interface = _read_config(label_config)
    audio = _audio_object(interface)
    controls = {c.name: c for c in interface.controls if audio.name in (c.to_name or [])}
    section_labels = tuple(controls[n.SECTION].labels) if _has(controls, n.SECTION, "Labels") else ()
    return ConfigTargets(
        audio_name=audio.name, audio_key=(audio.value or "").lstrip("$") or n.AUDIO,
        section=n.SECTION if section_labels else "", section_labels=section_labels,
        region_texts=tuple(x for x in n.PER_REGION_TEXTS if _has(controls, x, "TextArea") and _per_region(controls[x])),
        song_texts=tuple(x for x in n.SONG_TEXTS if _has(controls, x, "TextArea") and not _per_region(controls[x])),
        bpm_range=_bpm_range(controls), choices={x: tuple(controls[x].labels) for x in n.SONG_CHOICES
                                                 if _has(controls, x, "Choices")},
        config_hash=config_hash(label_config),
    )


def _read_config(label_config: str):
    """The config as the SDK's LabelInterface; ConfigError for a missing or unreadable config."""
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(label_config, str) or not label_config.strip():
        raise ConfigError("the request has no label_config: send the project's labeling config XML")
    try:
        return LabelInterface(label_config)
    except Exception as exc:  # the SDK raises several exception types for bad XML
        raise ConfigError(f"the label config is not valid XML ({exc}); fix it in the project settings") from None


def _audio_object(interface):
    """The Audio object the regions go on: the shipped name first; a config that renamed its only Audio object
    still works. ConfigError when there is none."""
    audios = [o for o in interface.objects if o.tag in AUDIO_TAGS]
    if not audios:
        raise ConfigError(
            f'the label config has no <Audio> object; this backend annotates songs: add '
            f'<Audio name="{n.AUDIO}" value="{n.AUDIO_VALUE}"/> (or use `ls-acestep label-config`)')
    return next((o for o in audios if o.name == n.AUDIO), audios[0])


def _has(controls: dict, name: str, tag: str) -> bool:
    return name in controls and controls[name].tag == tag


def _per_region(control) -> bool:
    return str(control.attr.get("perRegion", "")).lower() == "true"


def _bpm_range(controls: dict) -> tuple[float, float] | None:
    """The BPM Number control's (min, max), open where the config sets none; None without the control."""
    if not _has(controls, n.BPM, "Number"):
        return None
    attr = controls[n.BPM].attr
    return _float_or(attr.get("min"), float("-inf")), _float_or(attr.get("max"), float("inf"))


def _float_or(value: object, default: float) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def audio_reference(task: dict, targets: ConfigTargets) -> str:
    """The task's audio reference (URL, /data/... path or cloud URI); "" when the task carries none."""
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        return ""
    for key in (targets.audio_key, UNDEFINED_KEY):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


FAILED_SUFFIX = "-failed"


def failed_version(model_version: str) -> str:
    """The model_version a failed task's empty prediction carries: ``<model_version>-failed``. Label Studio's
    Retrieve Predictions (``MLBackend.predict_tasks``), ``preannotate --only-missing`` and the queue worker skip a
    task only when it holds a prediction of exactly the current version, so a failed task is predicted again on
    the next run (after its file is fixed) instead of counting as done."""
    return model_version + FAILED_SUFFIX


def empty_prediction(model_version: str) -> dict:
    """The prediction of a task that could not be annotated (``model_version`` is the backend's current one).
    Label Studio stores a batch only when every task has a prediction; this one is stored under
    ``failed_version`` so that it does not count as done, and the annotator starts from an empty timeline."""
    return {"result": [], "score": 0.0, "model_version": failed_version(model_version)}


def is_current_prediction(prediction, model_version: str) -> bool:
    """True for a real prediction of ``model_version``: that version and a non-empty result. An empty one (a
    failure stored before failed_version existed) does not count. ``prediction`` is a dict or an SDK object."""
    get = prediction.get if isinstance(prediction, dict) else lambda name: getattr(prediction, name, None)
    return get("model_version") == model_version and bool(get("result"))


def _match_choice(value: str, offered: tuple[str, ...], normalize) -> str | None:
    """The offered choice that means ``value``: exact first, then equal after normalisation ("Am" vs "A minor")."""
    if not value:
        return None
    if value in offered:
        return value
    canonical = normalize(value)
    if canonical is None:
        return None
    return next((c for c in offered if normalize(c) == canonical), None)


_CHOICE_NORMALIZERS = {
    n.KEYSCALE: normalize_keyscale,
    n.TIMESIGNATURE: normalize_timesignature,
    n.VOCAL_LANGUAGE: normalize_language,
}


def _song_text_items(song: SongAnnotation, name: str) -> list[str]:
    """The TextArea entries of one song-level control: one per list item, one for caption and lyrics."""
    values = {
        n.CAPTION: [song.caption], n.LYRICS: [song.lyrics], n.GENRE: song.genres,
        n.INSTRUMENTS: song.instruments, n.EFFECTS: song.effects,
        n.VOCAL_CHARACTERISTICS: song.vocal_characteristics, n.MIX_NOTES: song.mix_notes,
    }[name]
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def region_results(song: SongAnnotation, targets: ConfigTargets) -> list[dict]:
    """Results for the song's regions: one ``labels`` result and one result per non-empty per-region text, all
    with the region's id, start/end (seconds) clamped into [0, duration] and channel 0. Regions left empty by the
    clamp are dropped; a label outside the config's label set is mapped onto it or left out."""
    results: list[dict] = []
    duration = song.duration if song.duration is not None else float("inf")
    for index, region in enumerate(sorted(song.regions, key=lambda r: (r.start_sec, r.end_sec))):
        start = round(max(0.0, min(float(region.start_sec), duration)), TIME_DECIMALS)
        end = round(max(0.0, min(float(region.end_sec), duration)), TIME_DECIMALS)
        if end <= start:
            continue
        rid = region.id or f"seg{index + 1}"
        span = {"start": start, "end": end, "channel": 0}
        parts = []
        if targets.section:
            label = normalize_section_label(region.section_label, targets.section_labels)
            if label:
                parts.append((targets.section, "labels", {"labels": [label]}))
        texts = {n.SEGMENT_NOTES: region.notes, n.SEGMENT_LYRICS: region.lyrics}
        for name in targets.region_texts:
            text = (texts[name] or "").strip()
            if text:
                parts.append((name, "textarea", {"text": [text]}))
        for from_name, kind, value in parts:
            results.append({
                "id": rid, "from_name": from_name, "to_name": targets.audio_name, "type": kind,
                "value": {**span, **value},
            })
    return results


def song_results(song: SongAnnotation, targets: ConfigTargets) -> list[dict]:
    """Song-level results for every control the config has and the song has a value for; choices only with
    values the config offers, bpm only inside the Number's min/max."""
    results: list[dict] = []

    def add(name: str, kind: str, value: dict) -> None:
        results.append({"id": f"song-{name}", "from_name": name, "to_name": targets.audio_name, "type": kind,
                        "value": value})

    for name in targets.song_texts:
        items = _song_text_items(song, name)
        if items:
            add(name, "textarea", {"text": items})
    if targets.bpm_range is not None and song.bpm is not None:
        low, high = targets.bpm_range
        if low <= song.bpm <= high:
            add(n.BPM, "number", {"number": int(song.bpm)})
    values = {n.KEYSCALE: song.keyscale, n.TIMESIGNATURE: song.timesignature, n.VOCAL_LANGUAGE: song.language}
    for name, offered in targets.choices.items():
        choice = _match_choice(values[name], offered, _CHOICE_NORMALIZERS[name])
        if choice is not None:
            add(name, "choices", {"choices": [choice]})
    return results


def to_results(song: SongAnnotation, targets: ConfigTargets) -> list[dict]:
    """The full Label Studio result list of one song: regions in time order, then song-level fields."""
    return region_results(song, targets) + song_results(song, targets)


def make_prediction(song: SongAnnotation, targets: ConfigTargets, score: float, model_version: str) -> dict:
    """One Label Studio prediction: ``{"result": [...], "score": float in [0, 1], "model_version": str}``."""
    return {
        "result": to_results(song, targets),
        "score": round(min(1.0, max(0.0, float(score))), 4),
        "model_version": model_version,
    }
