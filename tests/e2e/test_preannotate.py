"""``ls-acestep preannotate`` against a real Label Studio, run as a user runs it (a subprocess, ENGINE=dsp): an
interrupted sample run (--limit, SIGINT) and a re-run that does only what is left; no task ends with two
predictions of one model version; a wrong project id or token is explained."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from .servers import REPO, create_project, task_predictions, upload_files

pytestmark = pytest.mark.labelstudio


def preannotate(label_studio, project_id: int, *args: str, model_dir, popen: bool = False, env: dict | None = None,
                cwd=REPO):
    """Run the command; ``model_dir=None`` leaves ENGINE and MODEL_DIR unset (as a new user runs it), ``env`` adds
    variables."""
    run_env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LABEL_STUDIO_", "QUEUE_", "MODEL_")) and k != "ENGINE"}
    if model_dir is not None:
        run_env.update(ENGINE="dsp", MODEL_DIR=str(model_dir))
    run_env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **(env or {}))
    cmd = [sys.executable, "-m", "ls_acestep.cli", "preannotate", "--ls-url", label_studio.url,
           "--ls-token", label_studio.token, "--project", str(project_id), *args]
    if popen:
        return subprocess.Popen(cmd, env=run_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=run_env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_preannotate_sample_interrupt_and_resume(label_studio, song_files, tmp_path):
    project_id = create_project(label_studio, "preannotate")  # no backend connected: nothing else predicts
    formats = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
    task_ids = upload_files(label_studio, project_id, [song_files[s] for s in formats])
    model_dir = tmp_path / "model_dir"

    # a sample of 3 (--limit), interrupted as soon as it has posted one prediction: a task in flight is finished,
    # the rest is left for the next run, and the run ends with status 130
    proc = preannotate(label_studio, project_id, "--limit", "3", "--concurrency", "1", model_dir=model_dir,
                       popen=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if ": posted" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    assert "run the same command again to continue" in err
    done = sum(bool(task_predictions(label_studio, t)) for t in task_ids)
    # the posted one, and the next one when it had started: it is finished, never cut off or lost from the count
    assert done in (1, 2), out + err
    assert f"{done} predicted, 0 skipped" in out and f"{len(task_ids) - done} not started" in out

    rerun = preannotate(label_studio, project_id, "--concurrency", "2", model_dir=model_dir)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(task_ids) - done} predicted, {done} skipped" in rerun.stdout
    versions = [[p.model_version for p in task_predictions(label_studio, t)] for t in task_ids]
    assert all(len(v) == 1 for v in versions) and len({v[0] for v in versions}) == 1


def test_preannotate_explains_a_wrong_project_or_token(label_studio, tmp_path):
    missing = preannotate(label_studio, 99999, model_dir=tmp_path)
    assert missing.returncode == 1
    assert "project 99999 does not exist" in missing.stderr and "Traceback" not in missing.stderr
    label_studio_bad = type(label_studio)(**{**label_studio.__dict__, "token": "0" * 40})
    refused = preannotate(label_studio_bad, 1, model_dir=tmp_path)
    assert refused.returncode == 1
    assert "refused the token" in refused.stderr and "Traceback" not in refused.stderr


def test_preannotate_told_nothing_on_a_cpu_machine(label_studio, song_files, tmp_path):
    """No ENGINE, no MODEL_DIR, no GPU: the DSP engine at once (no model download), the cache in the per-user data
    folder that `up` uses, nothing left in the folder the command ran in."""
    project_id = create_project(label_studio, "preannotate defaults")
    (task_id,) = upload_files(label_studio, project_id, [song_files[".wav"]])
    cwd, data_home = tmp_path / "here", tmp_path / "data-home"
    cwd.mkdir()
    result = preannotate(label_studio, project_id, model_dir=None, cwd=cwd,
                         env={"XDG_DATA_HOME": str(data_home), "CUDA_VISIBLE_DEVICES": ""})  # no GPU for torch
    assert result.returncode == 0, result.stderr
    assert "ENGINE=dsp: no GPU found" in result.stderr and "1 predicted" in result.stdout
    assert [p.model_version for p in task_predictions(label_studio, task_id)][0].startswith("dsp-")
    assert list(cwd.iterdir()) == []
    assert (data_home / "ls-acestep" / "model_dir" / "prediction_cache.sqlite3").is_file()
    assert str(data_home / "ls-acestep" / "model_dir") in result.stderr  # it says where the cache is
