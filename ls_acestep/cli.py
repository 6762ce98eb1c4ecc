"""``ls-acestep``: the click group. Subcommands live next to the code they drive and are imported only when
called, so ``ls-acestep convert`` never loads torch."""

from __future__ import annotations

import importlib

import click

from . import __version__

# command name -> "module:attribute" of a click.Command
COMMANDS = {
    "label-config": "label_config.cli:label_config_command",
    "convert": "converters.cli:convert_command",
    "validate": "converters.cli:validate_command",
    "import": "converters.importer:import_command",
    "serve": "ml_backend.server.cli:serve_command",
    "preannotate": "ml_backend.prelabel.preannotate:preannotate_command",
    "up": "ml_backend.studio.up:up_command",
    "connect": "ml_backend.studio.connect:connect_command",
    "review": "review.cli:review_command",
    "report": "review.cli:report_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ls-acestep")
def main() -> None:
    """Pre-annotate songs in Label Studio with Qwen audio models and convert the refined export into an
    ACE-Step 1.5 LoRA training dataset."""


if __name__ == "__main__":
    main()
