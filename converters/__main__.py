"""``python -m converters EXPORT --out DIR``: the same as ``ls-acestep convert``."""

from converters.cli import convert_command

if __name__ == "__main__":
    convert_command(prog_name="python -m converters")
