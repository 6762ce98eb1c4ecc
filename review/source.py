"""Where the review's tasks come from: a snapshot export file with whole predictions, or a project read through
Label Studio's API (which makes that same snapshot and downloads it). Either way the tasks are streamed with the
converter's export reader, one task in memory at a time.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

EXPORT_TIMEOUT = 600.0  # seconds to wait for Label Studio to build a snapshot (a large project takes minutes)
POLL_SECONDS = 1.0
_CHUNK_BYTES = 1 << 16


class SourceError(Exception):
    """The project or export cannot be read (the message says why and what to do)."""


def _request(method: str, url: str, headers: dict, what: str, **kwargs):
    import requests

    try:
        response = requests.request(method, url, headers=headers, timeout=60, **kwargs)
    except requests.RequestException as exc:  # an OSError too: the CLI would call it a write error
        raise SourceError(f"{what}: cannot reach Label Studio ({exc.__class__.__name__}); check --ls-url") from None
    if response.status_code in (401, 403):
        raise SourceError(f"{what}: Label Studio answered {response.status_code}; check --ls-token")
    if response.status_code == 404:
        raise SourceError(f"{what}: not found (HTTP 404); check --project")
    if response.status_code >= 400:
        raise SourceError(f"{what}: HTTP {response.status_code} {response.text[:200]}")
    return response


def _answer(response, what: str, key: str = "") -> dict:
    """The JSON object Label Studio answered (with ``key`` in it when given), else SourceError naming ``what``:
    a proxy's HTML page or another server on that port answers too."""
    try:
        data = response.json()
    except ValueError:  # requests' JSONDecodeError (also an OSError, through RequestException)
        data = None
    if not isinstance(data, dict) or (key and key not in data):
        raise SourceError(f"{what}: not a Label Studio answer (HTTP {response.status_code}, "
                          f"{response.text[:120]!r}); check --ls-url")
    return data


def download_snapshot(ls_url: str, token: str, project: int, folder: Path,
                      timeout: float = EXPORT_TIMEOUT) -> Path:
    """Ask Label Studio for a snapshot of ``project`` with whole predictions (the annotated tasks only: the others
    have nothing to compare), wait until it is built and stream it into ``folder``; returns the file."""
    from ls_acestep.media import MediaError, auth_header, make_client

    try:
        headers = {"Authorization": auth_header(make_client(ls_url, token))}
    except MediaError as exc:
        raise SourceError(str(exc)) from None
    base = f"{ls_url.rstrip('/')}/api/projects/{project}/exports"
    body = {"title": "ls-acestep review", "serialization_options": {"predictions": {"only_id": False}},
            "task_filter_options": {"annotated": "only"}}
    what = f"project {project}: creating a snapshot"
    export_id = _answer(_request("POST", base, headers, what, json=body), what, "id")["id"]
    deadline = time.monotonic() + timeout
    while True:
        what = f"project {project}: snapshot {export_id}"
        status = _answer(_request("GET", f"{base}/{export_id}", headers, what), what)
        if status.get("status") == "completed":
            break
        if status.get("status") == "failed":
            raise SourceError(f"project {project}: Label Studio failed to build snapshot {export_id}")
        if time.monotonic() > deadline:
            raise SourceError(f"project {project}: snapshot {export_id} not ready after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    what = f"project {project}: downloading snapshot {export_id}"
    response = _request("GET", f"{base}/{export_id}/download?exportType=JSON", headers, what, stream=True)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"project-{project}-", suffix=".json")
    import requests

    try:
        with os.fdopen(fd, "wb") as out, response:
            for chunk in response.iter_content(_CHUNK_BYTES):
                out.write(chunk)
    except requests.RequestException as exc:  # cut off part-way: the connection dropped or the body was short
        os.unlink(tmp)
        raise SourceError(f"{what}: the download broke off ({exc.__class__.__name__}); try again") from None
    return Path(tmp)
