"""Gunicorn entry point and gunicorn config in one module: run the backend with

    gunicorn -c python:ml_backend._wsgi

which binds ``0.0.0.0:$PORT`` (9090) with ``$WORKERS`` processes (1) of ``$THREADS`` threads (8), the conventions
of Label Studio's own ML backend examples. (``gunicorn ml_backend._wsgi:app`` works too, but then the model loads
on the first /predict instead of at start-up.)

Warm-up: the app and the analysis JIT are built once in the gunicorn master (inherited by every worker through
fork); the model loads in each worker right after the fork (``post_fork``), before the worker serves its first
request. It must not load in the master: CUDA cannot be used across a fork.
"""

from __future__ import annotations

import logging

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


def _warm_analysis() -> None:
    """JIT-compile the music analysis once, in the master, so forked workers inherit the compiled code."""
    try:
        from ml_backend.analysis.music import warm_up

        warm_up()
    except Exception:  # warm-up is an optimisation; a failure shows again, with its cause, on the first song
        _log.exception("analysis warm-up failed")


def post_fork(server, worker) -> None:
    """Gunicorn hook, in each new worker: load the model before the worker accepts requests, then start the
    pre-labeling workers that share it."""
    try:
        get_model(_settings).load()
    except Exception:
        _log.exception("worker %s: model load failed; /predict will retry and report the cause", worker.pid)
    start_prelabeling(_settings)


_warm_analysis()
