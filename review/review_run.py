"""``ls-acestep review``: compare each submitted annotation with the prediction it started from (or, with
``versions``, each named model version's prediction with the task's final annotation) and write ``review.json``
and ``review.html`` into one folder.

Tasks are streamed from the export; one bad task is reported with its id and the others are still compared.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from converters.export_reader import TaskError, iter_tasks, task_id
from ls_acestep.files import atomic_write

from . import plots
from .compare import BOUNDARY_WINDOWS, CHOICE_FIELDS, TEXT_FIELDS, compare_results
from .html import write_page
from .pairs import submitted, task_pairs
from .summary import pair_row, summarize

MOST_CHANGED = 25  # tasks listed on the page; the JSON has them all
JSON_NAME, HTML_NAME = "review.json", "review.html"


@dataclass
class Review:
    """The outcome of one review run."""

    rows: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)  # {task_id, reason}
    counts: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    correlations: dict = field(default_factory=dict)


def collect(export: Path, ls_url: str = "", versions: tuple[str, ...] = ()) -> Review:
    """Read ``export`` and compare every pair it holds."""
    review = Review()
    tasks = annotated = 0
    for index, task in enumerate(iter_tasks(export)):
        tasks += 1
        tid = task_id(task) if isinstance(task, dict) else None
        label = tid if tid is not None else f"#{index + 1}"
        try:
            if not isinstance(task, dict):
                raise TaskError(f"a {type(task).__name__} where a task object belongs")
            annotated += bool(submitted(task))
            pairs, reasons = task_pairs(task, versions)
        except TaskError as exc:
            review.problems.append({"task_id": label, "reason": str(exc)})
            continue
        review.problems.extend({"task_id": label, "reason": r} for r in reasons)
        for pair in pairs:
            try:
                row = pair_row(pair, compare_results(pair.prediction["result"], pair.annotation["result"]), ls_url)
            except Exception as exc:  # one unreadable result must not sink the review
                review.problems.append({"task_id": label, "reason": f"annotation {pair.annotation.get('id')}: "
                                        f"cannot compare ({exc.__class__.__name__}: {exc})"})
                continue
            review.rows.append(row)
    review.counts = {"tasks": tasks, "annotated_tasks": annotated, "compared": len(review.rows),
                     "not_compared": len(review.problems)}
    review.versions, review.correlations = summarize(review.rows)
    return review


def document(review: Review, source: str, versions: tuple[str, ...]) -> dict:
    """The JSON written to review.json."""
    return {
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "mode": "versions" if versions else "parent_prediction",
        "compared_versions": list(versions),
        "counts": review.counts,
        "versions": review.versions,
        "correlations": review.correlations,
        "tasks": review.rows,
        "problems": review.problems,
    }


def figures(review: Review) -> list[tuple[str, str]]:
    """(caption, data URI) of the page's plots, skipping those without data."""
    by_version: dict[str, list[dict]] = {}
    for row in review.rows:
        by_version.setdefault(row["model_version"], []).append(row)
    field_means = {}
    for version, rows in by_version.items():
        fields = sorted({f for r in rows for f in r["fields"]}, key=_field_order)
        field_means[version] = {f: _mean([r["fields"].get(f) for r in rows]) for f in fields}
    out = [
        ("How much each field was changed (0 = kept as predicted, 1 = replaced); the fields people fix most "
         "are where the prompt or the analysis needs work.",
         plots.grouped_bars(field_means, "Mean change per field", "share changed")),
        ("Amount changed per task: the mean of its fields' change shares.",
         plots.histogram({v: [r["amount"] for r in rows] for v, rows in by_version.items()},
                         "Amount changed per task", "amount changed", bins=20, value_range=(0, 1))),
        ("A useful score is low where people changed a lot (points from the top left to the bottom right).",
         plots.scatter({v: ([r["score"] for r in rows], [r["amount"] for r in rows])
                        for v, rows in by_version.items()}, "Prediction score against amount changed",
                       "prediction score", "amount changed")),
        ("Time in the editor (Label Studio's lead_time) against the amount changed.",
         plots.scatter({v: ([r["lead_time"] for r in rows], [r["amount"] for r in rows])
                        for v, rows in by_version.items()}, "Annotator time against amount changed",
                       "lead time (s)", "amount changed")),
        ("Mean distance between a predicted boundary and the final one it matched (within 3 s).",
         plots.histogram({v: [r["regions"]["mean_shift"] for r in rows if r["regions"]]
                          for v, rows in by_version.items()}, "Boundary shift per task", "seconds", bins=15)),
    ]
    return [(caption, uri) for caption, uri in out if uri]


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


_ORDER = ["boundaries", "labels", *TEXT_FIELDS, "lyrics", *CHOICE_FIELDS]


def _field_order(name: str) -> int:
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)


def run_review(export: Path, out: Path, ls_url: str = "", versions: tuple[str, ...] = (),
               source: str = "") -> tuple[dict, Path, Path]:
    """Review ``export`` into ``out``; returns (the JSON document, review.json path, review.html path)."""
    review = collect(export, ls_url, versions)
    doc = document(review, source or str(export), versions)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    atomic_write(json_path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    most = sorted(review.rows, key=lambda r: -r["amount"])[:MOST_CHANGED]
    html_path = write_page(out / HTML_NAME, "review.html", doc=doc, figures=figures(review), most_changed=most,
                           windows=[str(w) for w in BOUNDARY_WINDOWS], text_fields=TEXT_FIELDS,
                           choice_fields=CHOICE_FIELDS)
    return doc, json_path, html_path
