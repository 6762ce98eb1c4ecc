"""Which prediction each annotation started from, read from a Label Studio snapshot export (with whole
predictions).

Label Studio records the prediction an annotation was made from as the annotation's ``parent_prediction`` (an
id). When it is missing (annotations made through the API, older exports) the newest prediction created before
the annotation stands in. With ``versions`` the pairing is by model version instead: the task's final annotation
(the one the converter would use) against the newest prediction of each version, so two prompts or models are
measured on the same songs against the same human answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from converters.export_reader import TaskError, audio_ref, choose, task_id
from converters.json_text import finite_number

PARENT, OLDER, VERSION = "parent_prediction", "newest older prediction", "model version"


@dataclass
class Pair:
    """One annotation and the prediction it is compared with."""

    task_id: int
    project: int | None
    annotation: dict
    prediction: dict
    paired_by: str  # PARENT | OLDER | VERSION
    audio: str = ""

    @property
    def model_version(self) -> str:
        return str(self.prediction.get("model_version") or "(no version)")

    @property
    def score(self) -> float | None:
        return finite_number(self.prediction.get("score"))

    @property
    def lead_time(self) -> float | None:
        """Seconds the annotator spent on the task, as Label Studio measured it."""
        return finite_number(self.annotation.get("lead_time"))




def _int(value: object) -> int | None:
    if isinstance(value, dict):  # some exports nest the object
        value = value.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def submitted(task: dict) -> list[dict]:
    """The task's submitted annotations: not skipped, with a result."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise TaskError("\"annotations\" is not a list")
    return [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")
            and isinstance(a.get("result"), list) and a["result"]]


def whole_predictions(task: dict) -> list[dict]:
    """The task's predictions with a result. Raises TaskError when the export holds prediction ids only."""
    predictions = task.get("predictions") or []
    if not isinstance(predictions, list):
        raise TaskError("\"predictions\" is not a list")
    if predictions and all(isinstance(p, (int, str)) for p in predictions):
        raise TaskError("the export holds prediction ids only: export the snapshot with whole predictions "
                        "(ls-acestep review --project N does that for you)")
    return [p for p in predictions if isinstance(p, dict) and isinstance(p.get("result"), list) and p["result"]]


def _stamp(item: dict) -> str:
    # ISO timestamps of one export share a format, so they sort as strings
    return str(item.get("created_at") or item.get("updated_at") or "")


def parent_of(annotation: dict, predictions: list[dict]) -> tuple[dict | None, str]:
    """The prediction ``annotation`` started from and how it was found; (None, reason) when none."""
    parent = _int(annotation.get("parent_prediction"))
    if parent is not None:
        for p in predictions:
            if _int(p.get("id")) == parent:
                return p, PARENT
        return None, f"its parent prediction {parent} is not in the export (deleted, or empty: a failed prediction)"
    created = _stamp(annotation)
    older = [p for p in predictions if not created or _stamp(p) <= created]
    if not older:
        return None, "no prediction older than the annotation"
    return max(older, key=lambda p: (_stamp(p), _int(p.get("id")) or -1)), OLDER


def _audio(task: dict) -> str:
    try:
        return audio_ref(task)
    except TaskError:
        return ""


def task_pairs(task: dict, versions: tuple[str, ...] = ()) -> tuple[list[Pair], list[str]]:
    """The pairs of one task and the reasons some annotations (or versions) could not be paired. Raises
    TaskError for a malformed task."""
    tid = task_id(task)
    if tid is None:
        raise TaskError("the task has no integer \"id\"")
    project = _int(task.get("project"))
    predictions = whole_predictions(task)
    annotations = submitted(task)
    audio = _audio(task)
    if not annotations:
        return [], []
    if versions:
        choice, reason = choose(task)
        if choice is None:
            return [], [reason]
        final = next(a for a in annotations if a.get("id") == choice.id)
        pairs, missing = [], []
        for version in versions:
            mine = [p for p in predictions if str(p.get("model_version") or "") == version]
            if mine:
                newest = max(mine, key=lambda p: (_stamp(p), _int(p.get("id")) or -1))
                pairs.append(Pair(tid, project, final, newest, VERSION, audio))
            else:
                missing.append(version)
        if missing:  # the same songs for every version, or the comparison is not fair
            return [], [f"no prediction of version {', '.join(missing)}"]
        return pairs, []
    pairs, reasons = [], []
    for annotation in annotations:
        prediction, how = parent_of(annotation, predictions)
        if prediction is None:
            reasons.append(f"annotation {annotation.get('id')}: {how}")
        else:
            pairs.append(Pair(tid, project, annotation, prediction, how, audio))
    return pairs, reasons
