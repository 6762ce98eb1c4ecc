"""From compared pairs to the review's JSON: one row per annotation, sums per model version and field, and how
well the prediction score foresaw the human changes (Spearman's rank correlation, scipy).

A good score is low where people changed a lot: its rank correlation with the amount changed is negative, and the
closer to -1 the better it orders the work.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict

import numpy as np

from converters.stems import stem_and_ext

from .compare import (ACCEPTED, ADDED, BOUNDARY_WINDOWS, CHANGED, CHOICE_FIELDS, REMOVED, TEXT_FIELDS, TaskChange,
                      describe, field_changes)
from .pairs import Pair

MIN_CORRELATION_PAIRS = 3  # a rank correlation of fewer points says nothing


def task_link(ls_url: str, project: int | None, task_id: int) -> str:
    """The task's labeling page in Label Studio ("" without a URL or project)."""
    if not ls_url or project is None:
        return ""
    return f"{ls_url.rstrip('/')}/projects/{project}/data?task={task_id}"


def _round(value, digits: int = 4):
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def pair_row(pair: Pair, change: TaskChange, ls_url: str = "") -> dict:
    """The JSON row of one compared pair."""
    texts = {k: {"similarity": t.similarity, "kept": t.kept, "compared": t.compared}
             for k, t in change.texts.items()}
    for k, t in change.texts.items():
        if t.predicted or t.final:
            texts[k].update(predicted=t.predicted, final=t.final)
    return _round({
        "task_id": pair.task_id,
        "project": pair.project,
        "link": task_link(ls_url, pair.project, pair.task_id),
        "audio": "".join(stem_and_ext(pair.audio)) if pair.audio else "",
        "annotation_id": pair.annotation.get("id"),
        "prediction_id": pair.prediction.get("id"),
        "model_version": pair.model_version,
        "paired_by": pair.paired_by,
        "score": pair.score,
        "lead_time": pair.lead_time,
        "amount": change.amount,
        "fields": field_changes(change),
        "regions": asdict(change.regions) if change.regions is not None else None,
        "texts": texts,
        "lyrics": asdict(change.lyrics) if change.lyrics is not None else None,
        "choices": {k: asdict(c) for k, c in change.choices.items()},
        "changes": describe(change),
        "warnings": change.warnings,
    })


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def spearman(x: list, y: list) -> dict | None:
    """Spearman's rho and its p-value for the points where both are known; None for fewer than
    MIN_CORRELATION_PAIRS points or when one side is constant (no ranking to compare)."""
    from scipy.stats import spearmanr

    points = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(points) < MIN_CORRELATION_PAIRS:
        return None
    a, b = zip(*points)
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    result = spearmanr(a, b)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": len(points)}


def version_summary(rows: list[dict]) -> dict:
    """Sums and means over the rows of one model version, per field."""
    regions = [r["regions"] for r in rows if r["regions"] is not None]
    summary: dict = {
        "annotations": len(rows),
        "tasks": len({r["task_id"] for r in rows}),
        "mean_change": _mean(r["amount"] for r in rows),
        "median_lead_time": (float(np.median([r["lead_time"] for r in rows if r["lead_time"] is not None]))
                             if any(r["lead_time"] is not None for r in rows) else None),
        "mean_score": _mean(r["score"] for r in rows),
        "regions": None,
        "texts": {},
        "lyrics": None,
        "choices": {},
    }
    if regions:
        summary["regions"] = {
            "tasks": len(regions),
            "hit_rate": {str(w): _mean(r["hit_rate"][str(w)] for r in regions) for w in BOUNDARY_WINDOWS},
            "mean_shift": _mean(r["mean_shift"] for r in regions),
            "added": sum(r["added"] for r in regions),
            "deleted": sum(r["deleted"] for r in regions),
            "relabelled": sum(r["relabelled"] for r in regions),
            "predicted": sum(r["predicted"] for r in regions),
            "label_agreement": _mean(r["label_agreement"] for r in regions),
        }
    for control in TEXT_FIELDS:
        texts = [r["texts"][control] for r in rows if control in r["texts"]]
        if texts:
            summary["texts"][control] = {
                "tasks": len(texts), "compared": sum(t["compared"] for t in texts),
                "similarity": _mean(t["similarity"] for t in texts),
                # kept: per text (per region for notes), so a song with ten kept notes weighs ten
                "kept": sum(t["kept"] * t["compared"] for t in texts) / sum(t["compared"] for t in texts),
            }
    lyrics = [r["lyrics"] for r in rows if r["lyrics"] is not None]
    if lyrics:
        summary["lyrics"] = {"tasks": len(lyrics), "mean_wer": _mean(x["wer"] for x in lyrics),
                             "kept": sum(1 for x in lyrics if x["kept"]) / len(lyrics)}
    for control in CHOICE_FIELDS:
        outcomes = [r["choices"][control]["outcome"] for r in rows if control in r["choices"]]
        if outcomes:
            counts = {k: outcomes.count(k) for k in (ACCEPTED, CHANGED, ADDED, REMOVED)}
            summary["choices"][control] = {"tasks": len(outcomes), **counts,
                                           "accepted_rate": counts[ACCEPTED] / len(outcomes)}
    return _round(summary)


def correlations(rows: list[dict]) -> dict:
    """How the score and the annotator's time relate to the amount changed, overall and per field."""
    scores = [r["score"] for r in rows]
    fields = sorted({f for r in rows for f in r["fields"]})
    return _round({
        "score_vs_change": spearman(scores, [r["amount"] for r in rows]),
        "lead_time_vs_change": spearman([r["lead_time"] for r in rows], [r["amount"] for r in rows]),
        "score_vs_field_change": {f: spearman(scores, [r["fields"].get(f) for r in rows]) for f in fields},
    })


def summarize(rows: list[dict]) -> tuple[dict, dict]:
    """(per-version summaries, per-version correlations), versions in name order."""
    by_version: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_version[row["model_version"]].append(row)
    versions = sorted(by_version)
    return ({v: version_summary(by_version[v]) for v in versions},
            {v: correlations(by_version[v]) for v in versions})
