"""``ls-acestep review`` and ``ls-acestep report``. Only click and the standard library are imported at module
level, so ``ls-acestep --help`` stays fast."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE = 0, 1, 2


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_UNUSABLE)


@click.command("review")
@click.argument("export", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--project", type=int, default=None,
              help="Read this Label Studio project through the API (a snapshot with whole predictions).")
@click.option("--ls-url", envvar="LABEL_STUDIO_URL", show_envvar=True, default="",
              help="Label Studio URL: to read --project, and for the task links in the page.")
@click.option("--ls-token", envvar="LABEL_STUDIO_API_KEY", show_envvar=True, default="",
              help="Legacy token or personal access token.")
@click.option("--compare", "versions", multiple=True, metavar="VERSION",
              help="Compare these model versions on the same songs (repeat: --compare A --compare B): each "
                   "version's newest prediction against the task's final annotation.")
@click.option("--out", "out", default="ls-acestep-review", show_default=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder for review.json and review.html.")
def review_command(export, project, ls_url, ls_token, versions, out):
    """How far annotators moved each field of each model's predictions, and how well the prediction score
    foresaw it.

    Reads a snapshot EXPORT with whole predictions, or a project through the API (--project N with --ls-url and
    --ls-token). Each submitted annotation is compared with the prediction it started from (its
    parent_prediction, else the newest prediction older than it); with --compare, each named version with the
    task's final annotation, on the songs that have all of them.

    Exit status: 0 written, 1 written but some annotations could not be compared (listed), 2 unusable input.
    """
    from converters.export_reader import ExportError

    from .review_run import run_review
    from .source import SourceError, download_snapshot

    if (export is None) == (project is None):
        _fail("pass either an EXPORT file or --project N (with --ls-url and --ls-token)")
    if len(set(versions)) == 1:
        _fail("--compare needs at least two different model versions")
    try:
        with tempfile.TemporaryDirectory(prefix="ls-acestep-review-") as tmp:
            if project is not None:
                if not ls_url or not ls_token:
                    _fail("--project needs --ls-url and --ls-token (or LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
                click.echo(f"reading project {project} from {ls_url} ...", err=True)
                export_path = download_snapshot(ls_url, ls_token, project, Path(tmp))
                source = f"project {project} at {ls_url.rstrip('/')}"
            else:
                export_path, source = export, str(export)
            doc, json_path, html_path = run_review(export_path, out, ls_url=ls_url, versions=tuple(versions),
                                                   source=source)
    except (SourceError, ExportError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write to {out}: {exc.strerror}")
    counts = doc["counts"]
    click.echo(f"compared {counts['compared']} annotation(s) of {counts['tasks']} task(s) "
               f"across {len(doc['versions'])} model version(s); not compared: {counts['not_compared']}")
    for version, corr in doc["correlations"].items():
        rho = corr["score_vs_change"]
        click.echo(f"  {version}: mean change {doc['versions'][version]['mean_change']:.0%}, score vs change "
                   + (f"Spearman rho {rho['rho']:+.2f} (n={rho['n']})" if rho else "not enough data"))
    click.echo(f"wrote {html_path} and {json_path}")
    sys.exit(EXIT_PROBLEMS if doc["problems"] else EXIT_OK)


@click.command("report")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", "out", default=None, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for report.html, report.json and the audio cache (default: FOLDER-report beside "
                   "FOLDER, so that validate and ACE-Step never see them).")
@click.option("--audio/--no-audio", "with_audio", default=True, show_default=True,
              help="Measure loudness and find near-duplicates (decodes every song).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes measuring audio (default: the number of CPUs, at most 8).")
def report_command(folder, out, with_audio, jobs):
    """A self-contained HTML report of a dataset FOLDER (a converted one, or any folder validate reads): counts,
    distributions, a timeline per song, loudness, near-duplicate songs and the problems validate finds.

    Exit status: 0 written, 2 unusable input.
    """
    from .report import run_report

    def say(line: str) -> None:
        click.echo(line, err=True)

    out = out or folder.resolve().with_name(folder.resolve().name + "-report")
    try:
        doc, json_path, html_path = run_report(folder, out, with_audio=with_audio, jobs=jobs, say=say)
    except OSError as exc:
        _fail(f"cannot write to {out}: {exc.strerror}")
    c = doc["counts"]
    click.echo(f"{c['songs']} song(s), {c['with_caption']} with a caption, {c['problems']} validate problem(s), "
               f"{len(doc['duplicates'])} near-duplicate pair(s), {c['loudness_flags']} loudness flag(s)")
    click.echo(f"wrote {html_path} and {json_path}")
    sys.exit(EXIT_OK)
