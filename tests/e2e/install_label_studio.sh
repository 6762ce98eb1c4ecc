#!/usr/bin/env bash
# Installs Label Studio 1.23 into its own virtual environment (default .ls-venv); does nothing when present.
set -euo pipefail
venv="${1:-.ls-venv}"
if [ -x "$venv/bin/label-studio" ]; then exit 0; fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "label-studio==1.23.*"
