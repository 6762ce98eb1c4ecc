"""``ls-acestep convert`` and ``ls-acestep validate``. Only click and the standard library are imported at module
level, so ``ls-acestep --help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _progress(enabled_bar: bool, say):
    """A ``progress_factory`` for convert(): a tqdm bar over bytes read on a terminal, else a plain line at every
    10 % of the export."""

    def factory(total: int):
        if enabled_bar:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc="converting", file=sys.stderr, leave=False)
            state = {"last": 0}

            def update(position: int) -> None:
                bar.update(max(position - state["last"], 0))
                state["last"] = position

            update.close = bar.close  # type: ignore[attr-defined]
            return update
        marks = {"next": 10}

        def update(position: int) -> None:
            percent = 100 * position // max(total, 1)
            if percent >= marks["next"]:
                say(f"progress: {min(percent, 100)}% of the export read")
                marks["next"] = (percent // 10 + 1) * 10

        return update

    return factory


@click.command("convert")
@click.argument("export", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Output folder: dataset/, manifest, index, ACE-Step dataset file, report.")
@click.option("--media-root", type=click.Path(path_type=Path), default=None,
              help="A copy of Label Studio's media folder (holds upload/<project>/<file>).")
@click.option("--document-root", type=click.Path(path_type=Path), default=None, envvar="LOCAL_FILES_DOCUMENT_ROOT",
              show_envvar=True, help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT, for /data/local-files/?d=... audio.")
@click.option("--ls-url", envvar="LABEL_STUDIO_URL", show_envvar=True, default="",
              help="Label Studio URL, to download audio.")
@click.option("--ls-token", envvar="LABEL_STUDIO_API_KEY", show_envvar=True, default="",
              help="Legacy token or personal access token.")
@click.option("--use-predictions", is_flag=True,
              help="Use the newest prediction for tasks without a usable annotation.")
@click.option("--audio", type=click.Choice(["copy", "link", "none"]), default="copy", show_default=True,
              help="Put audio into dataset/ as a copy, a symlink, or not at all.")
@click.option("--force", is_flag=True, help="Overwrite sidecars and lyrics files edited by hand.")
@click.option("--dry-run", is_flag=True, help="Print the plan and write nothing.")
@click.option("--acestep-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="ACE-Step's working directory (where it is started): acestep_dataset.json then names the audio "
                   "relative to it, and --out must lie under it (ACE-Step refuses paths outside).")
def convert_command(export, out, media_root, document_root, ls_url, ls_token, use_predictions, audio, force,
                    dry_run, acestep_dir):
    """Convert a Label Studio JSON EXPORT into an ACE-Step 1.5 LoRA dataset in --out.

    Audio not found under --media-root or --document-root is downloaded from Label Studio: set LABEL_STUDIO_URL
    and LABEL_STUDIO_API_KEY in the environment (or pass --ls-url and --ls-token).

    Exit status: 0 all tasks converted, 1 some skipped or failed (see conversion_report.json), 2 unusable input.
    """
    from ls_acestep.media import MediaSource

    from .convert import Options, convert

    bar = sys.stderr.isatty() and not dry_run
    if bar:
        from tqdm import tqdm

        def say(line: str) -> None:
            tqdm.write(line, file=sys.stderr)
    else:
        def say(line: str) -> None:
            click.echo(line, err=True)

    source = MediaSource(ls_url=ls_url.rstrip("/"), ls_token=ls_token, media_root=media_root,
                         document_root=document_root)
    options = Options(export=export, out=out, source=source, audio=audio, use_predictions=use_predictions,
                      force=force, dry_run=dry_run, acestep_dir=acestep_dir)
    factory = _progress(bar, say)
    updates = []

    def tracked(total):
        update = factory(total)
        updates.append(update)
        return update

    summary = convert(options, say=say, progress_factory=tracked)
    for update in updates:
        getattr(update, "close", lambda: None)()
    if summary.fatal:
        click.echo(f"error: {summary.fatal}", err=True)
    c = summary.counts()
    verb = "would convert" if dry_run else "converted"
    click.echo(f"{verb} {c['converted']} of {c['tasks']} tasks ({c['from_predictions']} from predictions); "
               f"skipped {c['skipped']}, failed {c['failed']}, hand-edited kept {c['kept']}, "
               f"with warnings {c['with_warnings']}" + (f"; report: {summary.report}" if summary.report else ""))
    sys.exit(summary.exit_code)


@click.command("validate")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--quiet", is_flag=True, help="Print only the problems, not the notes and what ACE-Step holds.")
@click.option("--release", "release", type=click.Choice(["all", "current", "early"]), default="all",
              show_default=True, help="Which ACE-Step 1.5 folder reader to check against: current (from mid "
              "February 2026: JSON sidecars) and/or early (before: <stem>.txt and CSV only).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: per song what each release holds and "
              "how it differs from the sidecar, and every finding.")
def validate_command(folder, quiet, release, as_json):
    """Check a folder of audio files and sidecars against what ACE-Step 1.5 reads: per song what each release
    will hold, every difference from the sidecar and what it would ignore or misread. Exit status: 0 clean (notes
    only), 1 problems found."""
    import json

    from .acestep_check import holds_lines
    from .acestep_readers import RELEASES
    from .validate import validate_report

    releases = tuple(RELEASES.values()) if release == "all" else (RELEASES[release],)
    findings, views = validate_report(folder, releases)
    problems = [f for f in findings if f.level == "problem"]
    if as_json:
        click.echo(json.dumps({
            "folder": str(folder), "releases": [r.name for r in releases], "problems": len(problems),
            "songs": [v.as_json(folder) for v in views],
            "findings": [{"path": f.line(folder).split(": ", 1)[0], "level": f.level, "message": f.message}
                         for f in findings]}, ensure_ascii=False, indent=2))
        sys.exit(1 if problems else 0)
    if not quiet:
        for view in views:
            click.echo(f"{view.audio.relative_to(folder)}:")
            for line in holds_lines(view):
                click.echo(f"  {line}")
    for finding in findings:
        if finding.level == "problem" or not quiet:
            click.echo(finding.line(folder))
    click.echo(f"{len(problems)} problem(s) in {folder}" if problems else f"{folder}: no problems found")
    sys.exit(1 if problems else 0)
