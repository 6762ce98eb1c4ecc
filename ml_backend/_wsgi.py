"""Gunicorn entry point and gunicorn config in one module: run the backend with

    gunicorn -c python:ml_backend._wsgi

which binds ``0.0.0.0:$PORT`` (9090) with ``$WORKERS`` processes (1) of ``$THREADS`` threads (8), the conventions
of Label Studio's own ML backend examples. (``gunicorn ml_backend._wsgi:app`` works too, but then the model loads
on the first /predict instead of at start-up.)

Start-up: the master only builds the app (a few hundred ms of imports), so the server answers ``/health`` and
``/setup`` (Label Studio's 3 s connection check) about a second after it starts. Each worker then warms up in a
background thread right after the fork (``post_fork``): the analysis libraries and their JIT code, then the model;
a ``/predict`` that arrives first waits for what it needs (the model's load lock) instead of failing. The model
must not load in the master: CUDA cannot be used across a fork. ``bench/bench_startup.py`` measures this.
"""

from __future__ import annotations

import logging
import threading

from ml_backend.server.app import create_app, start_prelabeling
from ml_backend.model import get_model
from ml_backend.settings import ServerSettings, Settings, SettingsError

_log = logging.getLogger("ml_backend.wsgi")


try:
    _settings = Settings.from_env()
    _server = ServerSettings.from_env()
except SettingsError as _exc:
    raise SystemExit(f"ls-acestep backend: {_exc} (see the settings table in docs/backend.md)") from None

app = create_app(_settings)

# --- gunicorn settings (read by `gunicorn -c python:ml_backend._wsgi`; names without "_" are gunicorn's) -------
wsgi_app = "ml_backend._wsgi:app"
bind = f"0.0.0.0:{_server.port}"
workers = _server.workers
threads = _server.threads
timeout = 0  # a /predict of many songs may take minutes; Label Studio has its own timeout
preload_app = True


def post_fork(server, worker) -> None:
    """Gunicorn hook, in each new worker: warm up in the background (see the module's docstring)."""
    threading.Thread(target=_warm_worker, args=(worker.pid,), name="warm-up", daemon=True).start()


def _warm_worker(pid: int) -> None:
    """Load the analysis and the model, then start the pre-labeling workers that share them."""
    try:
        get_model(_settings).load()
    except Exception:
        _log.exception("worker %s: model load failed; /predict will retry and report the cause", pid)
    start_prelabeling(_settings)
