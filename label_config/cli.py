"""``ls-acestep label-config``: print the labeling config."""

from __future__ import annotations

import click

from .render import render_config
from .vocabulary import SECTION_LABELS


@click.command("label-config")
@click.option("--sections", metavar="LABELS",
              help="Comma-separated section labels replacing the default set "
                   f"({', '.join(SECTION_LABELS)}).")
@click.option("--minimal", is_flag=True,
              help="Leave out the optional controls (per-region lyrics, song lyrics, effects, vocal "
                   "characteristics, mix notes).")
def label_config_command(sections: str | None, minimal: bool) -> None:
    """Print the Label Studio labeling config for songs (paste it into Settings > Labeling Interface)."""
    labels = SECTION_LABELS
    if sections is not None:
        labels = tuple(dict.fromkeys(s.strip() for s in sections.split(",") if s.strip()))
        if not labels:
            raise click.UsageError("--sections needs at least one label, e.g. --sections 'Verse,Chorus'")
    click.echo(render_config(labels, minimal=minimal), nl=False)
