"""A song that cannot be decoded, against a real Label Studio: the Data Manager's Retrieve Predictions stores its
empty prediction under ``<model_version>-failed`` (Label Studio takes each returned prediction's model_version),
so neither a second Retrieve Predictions nor ``preannotate --only-missing`` counts the task as done; once the file
is fixed on disk the next Retrieve Predictions gives it a real prediction, and the good song is never predicted
twice."""

from __future__ import annotations

import pytest

from tests.music import make_text_as_audio

from .servers import connect_backend, create_project, task_ids_by_file, task_predictions, upload_files, wait_until
from .test_preannotate import preannotate

pytestmark = pytest.mark.labelstudio


def retrieve_predictions(label_studio, project_id: int) -> None:
    """The Data Manager's "Retrieve Predictions" action on every task of the project."""
    r = label_studio.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
                         json={"selectedItems": {"all": True, "excluded": []}})
    assert r.status_code == 200, f"retrieve_tasks_predictions: HTTP {r.status_code} {r.text}"


def versions(label_studio, task_id: int) -> list[tuple[str, bool]]:
    """(model_version, has a result) of each of the task's predictions, oldest first."""
    return [(p.model_version, bool(p.result)) for p in sorted(task_predictions(label_studio, task_id),
                                                              key=lambda p: p.id)]


def test_failed_task_is_predicted_again_after_its_file_is_fixed(label_studio, dsp_backend, song_files, tmp_path):
    project_id = create_project(label_studio, "broken then fixed")
    upload_files(label_studio, project_id, [song_files[".wav"], make_text_as_audio(tmp_path / "notes.wav")])
    by_name = task_ids_by_file(label_studio, project_id)
    good, bad = by_name["song.wav"], by_name["notes.wav"]
    connect_backend(label_studio, project_id, dsp_backend)  # after the import: no webhook, nothing queued
    version = dsp_backend.health()["model_version"]

    retrieve_predictions(label_studio, project_id)
    wait_until(lambda: task_predictions(label_studio, good) and task_predictions(label_studio, bad), 120,
               "a prediction on both tasks")
    assert versions(label_studio, good) == [(version, True)]
    assert versions(label_studio, bad) == [(f"{version}-failed", False)]

    # preannotate --only-missing (the default) skips the good song but tries the broken one again
    run = preannotate(label_studio, project_id, model_dir=tmp_path / "model_dir")
    assert run.returncode == 1, run.stderr
    assert "0 predicted, 1 skipped" in run.stdout and "1 failed" in run.stdout, run.stdout
    assert f"failed: task {bad}:" in run.stdout

    # fix the file where Label Studio keeps the upload, then Retrieve Predictions again
    ref = next(t.data["audio"] for t in label_studio.client().tasks.list(project=project_id) if t.id == bad)
    stored = label_studio.data_dir / "media" / ref.removeprefix("/data/")
    assert stored.is_file(), f"the upload {ref} is not at {stored}"
    stored.write_bytes(song_files[".wav"].read_bytes())
    retrieve_predictions(label_studio, project_id)
    wait_until(lambda: (version, True) in versions(label_studio, bad), 120, "a real prediction on the fixed task")
    assert versions(label_studio, bad) == [(f"{version}-failed", False), (version, True)]
    assert versions(label_studio, good) == [(version, True)]  # Label Studio skipped it: already predicted

    # now both count as done for preannotate
    again = preannotate(label_studio, project_id, model_dir=tmp_path / "model_dir")
    assert again.returncode == 0, again.stderr
    assert "0 predicted, 2 skipped" in again.stdout, again.stdout
