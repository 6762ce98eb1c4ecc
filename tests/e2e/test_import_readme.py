"""The README's import command, run as written (curl, against a real Label Studio): one task per file. And the
form it warns against, the same field name repeated, which Label Studio reads as one file (it iterates the
upload's fields, and a repeated field keeps its last file)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .servers import REPO, create_project, project_task_ids

pytestmark = pytest.mark.labelstudio


def readme_import_command() -> str:
    """The curl command of the README's quick start, its continuation lines joined."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^\s*(curl .*?/import\?commit_to_project=true\")\s*$", readme, flags=re.M | re.S)
    assert match, "the README has no curl import command"
    return re.sub(r"\\\n\s*", "", match.group(1))


def run_curl(command: str, cwd, label_studio, project_id: int) -> None:
    env = {"PATH": "/usr/bin:/bin", "TOKEN": label_studio.token, "PROJECT": str(project_id)}
    command = command.replace("http://127.0.0.1:8080", label_studio.url)
    done = subprocess.run(["bash", "-c", command + " --fail --silent --show-error"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command}\n{done.stderr}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_import_command_makes_one_task_per_file(label_studio, song_files, tmp_path):
    command = readme_import_command()
    files = re.findall(r"-F (\w+)=@(\S+)", command)
    assert len(files) >= 2 and len({field for field, _ in files}) == len(files), command
    for _, name in files:  # the README's names, each a real song in the format its suffix says
        shutil.copyfile(song_files[name[name.rindex("."):]], tmp_path / name)

    project_id = create_project(label_studio, "readme import")
    run_curl(command, tmp_path, label_studio, project_id)
    assert len(project_task_ids(label_studio, project_id)) == len(files)

    # the pitfall the README names: one field name repeated imports one file
    repeated = re.sub(r"-F \w+=@", "-F file=@", command)
    other = create_project(label_studio, "readme import, repeated field")
    run_curl(repeated, tmp_path, label_studio, other)
    assert len(project_task_ids(label_studio, other)) == 1
