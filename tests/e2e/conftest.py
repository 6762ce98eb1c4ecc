"""Real servers for the end-to-end tests: one Label Studio 1.23 for the session (from .ls-venv, installed by
install_label_studio.sh when missing) and our backend under gunicorn, as in production, with the tiny offline
Qwen2-Audio (ENGINE=transformers) or with ENGINE=dsp. Nothing is mocked. Every server logs to a file; the tail of
each log is attached to the report of a failing test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .servers import (LOGS, LS_PASSWORD, LS_START_TIMEOUT, LS_TOKEN, LS_USER, Backend, LabelStudioServer,
                      backend_env, copy_database, ensure_label_studio, free_port, label_studio_env, log_tail,
                      stop_process, wait_until)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and LOGS and ("labelstudio" in item.keywords or "browser" in item.keywords):
        for path in LOGS:
            report.sections.append((f"server log {path.name}", log_tail(path)))


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on loopback with a fresh data dir, an admin user and a known legacy token.

    For quick reruns while developing, E2E_LABEL_STUDIO=<data dir> reuses a server started by hand on that data dir
    (with E2E_LABEL_STUDIO_URL and the test token); CI never sets it."""
    root = tmp_path_factory.mktemp("label-studio")
    if os.environ.get("E2E_LABEL_STUDIO"):
        data_dir = Path(os.environ["E2E_LABEL_STUDIO"])
        yield LabelStudioServer(url=os.environ["E2E_LABEL_STUDIO_URL"],
                                token=os.environ.get("E2E_LABEL_STUDIO_TOKEN", LS_TOKEN), username=LS_USER,
                                password=LS_PASSWORD, data_dir=data_dir, document_root=root / "files",
                                log=root / "none.log", template_db=copy_database(data_dir, root / "template.sqlite3"))
        return
    exe = ensure_label_studio()
    data_dir, document_root = root / "data", root / "files"
    document_root.mkdir(parents=True)
    port = free_port()
    log = root / "label-studio.log"
    LOGS.append(log)
    cmd = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), "--username", LS_USER, "--password", LS_PASSWORD,
           "--user-token", LS_TOKEN, "--enable-legacy-api-token"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=label_studio_env(data_dir, document_root), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    server = LabelStudioServer(url=f"http://127.0.0.1:{port}", token=LS_TOKEN, username=LS_USER,
                               password=LS_PASSWORD, data_dir=data_dir, document_root=document_root, log=log,
                               proc=proc)
    try:
        wait_until(lambda: server.api("GET", "/api/projects").status_code == 200, LS_START_TIMEOUT,
                   "Label Studio to answer /api/projects with the test token", interval=1.0, proc=proc, log=log)
        server.template_db = copy_database(data_dir, root / "template.sqlite3")
        yield server
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def start_backend(label_studio, tmp_path_factory):
    """A factory: ``start_backend(name, **env)`` starts a gunicorn backend on a free port; all are stopped at the
    end of the session."""
    started: list[Backend] = []

    def start(name: str, **overrides) -> Backend:
        folder = tmp_path_factory.mktemp(f"backend-{name}")
        model_dir = Path(overrides.pop("MODEL_DIR", folder / "model_dir"))
        port = free_port()
        log = folder / f"backend-{name}.log"
        LOGS.append(log)
        backend = Backend(url=f"http://127.0.0.1:{port}", port=port, model_dir=model_dir, log=log,
                          env=backend_env(label_studio, model_dir, **overrides))
        started.append(backend)
        return backend.start()

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture(scope="session")
def dsp_backend(start_backend, request):
    """ENGINE=dsp: analysis only, no language model; quick. Failing tasks are retried once, 5 s apart. Its queue
    is in a real redis-server when one is installed (the restart test covers the SQLite queue)."""
    extra = {"QUEUE_URL": request.getfixturevalue("redis_url")} if shutil.which("redis-server") else {}
    return start_backend("dsp", ENGINE="dsp", MAX_ATTEMPTS="2", **extra)


@pytest.fixture(scope="session")
def tiny_backend(start_backend, tiny_model_dir):
    """ENGINE=transformers with the tiny offline Qwen2-Audio (random weights: texts are gibberish)."""
    return start_backend("tiny", ENGINE="transformers", MODEL_ID=str(tiny_model_dir), DEVICE="cpu",
                         MAX_NEW_TOKENS="24", BATCH_SIZE="4", QUEUE_WORKERS="0")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port, no persistence, stopped after the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the Redis queue is untested")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not answer within 5 s")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
