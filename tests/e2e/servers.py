"""Starting and talking to real servers in the end-to-end tests: Label Studio 1.23 from its own venv and our
backend under gunicorn; helpers for the Label Studio API calls the tests make (project, upload, connect, export)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("LS_ACESTEP_LS_VENV", REPO / ".ls-venv"))
INSTALLER = REPO / "tests" / "e2e" / "install_label_studio.sh"
LS_USER, LS_PASSWORD = "admin@example.com", "e2e-password-1"
LS_TOKEN = "e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0"  # a legacy token (40 characters, like Label Studio's own)
LS_START_TIMEOUT = 300.0  # seconds; the first start on an empty data dir runs the migrations (25-60 s)
BACKEND_START_TIMEOUT = 180.0

LOGS: list[Path] = []  # every server log of the session, attached to failing tests' reports


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.5, proc=None, log: Path | None = None):
    """Poll ``check()`` until it returns something truthy (returned); fail naming ``what`` after ``timeout``
    seconds, or as soon as ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log) if log else ""
            pytest.fail(f"{what}: the process exited with status {proc.returncode}\n{tail}")
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- {path} (last {lines} lines) ---\n" + "\n".join(text[-lines:])


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process group (the server and its children), SIGKILL what is left after ``timeout``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def label_studio_env(data_dir: Path, document_root: Path) -> dict:
    """The environment a test Label Studio needs: backends on loopback allowed, no phoning home, local files on."""
    env = dict(os.environ)
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"):
        env.pop(name, None)
    env.update(
        ML_BLOCK_LOCAL_IP="false", USE_DEFAULT_BANNED_SUBNETS="false", SSRF_PROTECTION_ENABLED="false",
        LATEST_VERSION_CHECK="false", COLLECT_ANALYTICS="false",
        LOCAL_FILES_SERVING_ENABLED="true", LOCAL_FILES_DOCUMENT_ROOT=str(document_root),
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir), PATH=f"{LS_VENV / 'bin'}:{env.get('PATH', '')}",
    )
    return env


def ensure_label_studio() -> Path:
    """The label-studio executable in LS_VENV, installed by install_label_studio.sh when missing."""
    exe = LS_VENV / "bin" / "label-studio"
    if not exe.exists():
        subprocess.run(["bash", str(INSTALLER), str(LS_VENV)], check=True, timeout=1200)
    if not exe.exists():
        pytest.fail(f"Label Studio is not installed in {LS_VENV}; run: bash {INSTALLER} {LS_VENV}")
    return exe


@dataclass
class LabelStudioServer:
    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    document_root: Path
    log: Path
    proc: subprocess.Popen | None = None
    template_db: Path | None = None  # a copy of the database right after start-up (migrated, one user)

    def client(self):
        from ls_acestep.media import make_client

        return make_client(self.url, self.token)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """A raw API call with the token (for endpoints the SDK does not wrap the way a test needs)."""
        headers = kwargs.pop("headers", {}) | {"Authorization": f"Token {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)


def copy_database(data_dir: Path, target: Path) -> Path:
    """A consistent copy of a running Label Studio's SQLite database (SQLite's online backup)."""
    import sqlite3

    src = sqlite3.connect(data_dir / "label_studio.sqlite3")
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return target


@dataclass
class Backend:
    """Our backend under gunicorn. ``restart()`` stops it and starts it again on the same port and MODEL_DIR."""

    url: str
    port: int
    env: dict
    model_dir: Path
    log: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    extra: dict = field(default_factory=dict)

    def start(self) -> "Backend":
        self.starts += 1
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:ml_backend._wsgi", "--bind", f"127.0.0.1:{self.port}"]
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {self.starts}: {' '.join(cmd)}\n".encode())
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=True)
        wait_until(lambda: requests.get(self.url + "/health", timeout=5).status_code == 200,
                   BACKEND_START_TIMEOUT, f"the backend on {self.url} to answer /health", proc=self.proc,
                   log=self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> "Backend":
        self.stop()
        return self.start()

    def health(self) -> dict:
        return requests.get(self.url + "/health", timeout=10).json()

    def settings(self):
        """The backend's settings as the backend process reads them (for opening its queue from the test)."""
        from ml_backend.settings import Settings

        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(self.env)
            return Settings.from_env()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def backend_env(label_studio: LabelStudioServer, model_dir: Path, **overrides) -> dict:
    """The backend's environment: it reaches Label Studio with the test token; overrides win."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE", "MODEL_", "QUEUE_"))}
    env.update(
        LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY=label_studio.token, MODEL_DIR=str(model_dir),
        LOCAL_FILES_DOCUMENT_ROOT=str(label_studio.document_root), WORKERS="1", THREADS="4", LOG_LEVEL="INFO",
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


# --- Label Studio helpers ----------------------------------------------------------------------------------------

def create_project(ls: LabelStudioServer, title: str) -> int:
    """A project with the shipped label config; returns its id."""
    from label_config import shipped_config

    return ls.client().projects.create(title=title, label_config=shipped_config()).id


def upload_files(ls: LabelStudioServer, project_id: int, paths) -> list[int]:
    """Upload audio files in one import request (as the Data Manager's Import dialog does); returns task ids."""
    # one form field per file: Label Studio reads one file per field name
    files = [(f"file{i}", (Path(p).name, Path(p).read_bytes())) for i, p in enumerate(paths)]
    r = ls.api("POST", f"/api/projects/{project_id}/import?commit_to_project=true", files=files)
    assert r.status_code in (200, 201), f"import into project {project_id} failed: HTTP {r.status_code} {r.text}"
    return project_task_ids(ls, project_id)


def project_task_ids(ls: LabelStudioServer, project_id: int) -> list[int]:
    return sorted(t.id for t in ls.client().tasks.list(project=project_id))


def task_ids_by_file(ls: LabelStudioServer, project_id: int) -> dict[str, int]:
    """Uploaded file name (without Label Studio's 8-hex prefix) -> task id. Reads the task list: opening one task
    (``GET /api/tasks/<id>``) would make Label Studio ask the backend for a prediction."""
    return {t.data["audio"].rsplit("/", 1)[-1].split("-", 1)[-1]: t.id
            for t in ls.client().tasks.list(project=project_id)}


def connect_backend(ls: LabelStudioServer, project_id: int, backend: Backend, title: str = "ls-acestep") -> int:
    """``POST /api/ml``: connect the backend to the project (this also makes Label Studio send webhooks)."""
    r = ls.api("POST", "/api/ml", json={"project": project_id, "url": backend.url, "title": title,
                                        "is_interactive": False})
    assert r.status_code in (200, 201), f"connecting {backend.url} to project {project_id}: {r.status_code} {r.text}"
    return r.json()["id"]


def task_predictions(ls: LabelStudioServer, task_id: int) -> list:
    return list(ls.client().predictions.list(task=task_id))


def snapshot_export(ls: LabelStudioServer, project_id: int, target: Path) -> Path:
    """Export every task with whole predictions through the snapshot API; returns the downloaded JSON file."""
    r = ls.api("POST", f"/api/projects/{project_id}/exports",
               json={"title": "e2e", "serialization_options": {"predictions": {"only_id": False}},
                     "task_filter_options": {"annotated": None}})
    assert r.status_code in (200, 201), f"snapshot export failed: {r.status_code} {r.text}"
    export_id = r.json()["id"]
    wait_until(lambda: ls.api("GET", f"/api/projects/{project_id}/exports/{export_id}").json()["status"]
               == "completed", 60, f"export {export_id} of project {project_id} to complete")
    r = ls.api("GET", f"/api/projects/{project_id}/exports/{export_id}/download?exportType=JSON")
    assert r.status_code == 200, f"downloading export {export_id}: {r.status_code}"
    target.write_bytes(r.content)
    return target


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``ls-acestep ARGS`` in a subprocess of this checkout, with the Label Studio variables of the developer's
    shell removed, so that only the arguments the test gives decide where it reads from."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LOCAL_FILES_DOCUMENT_ROOT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "ls_acestep.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)
