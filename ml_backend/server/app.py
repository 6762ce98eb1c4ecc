"""The HTTP side of the backend: the routes Label Studio 1.23 calls, with the bodies it sends and accepts.

``GET /health`` and ``GET /`` (status), ``POST /setup`` (model version; Label Studio calls it before every batch
with a 3 s timeout, so it never loads the model), ``POST /predict`` (``{"tasks", "label_config", ...}`` to
``{"results": [one prediction per task]}``), ``POST /webhook`` (handed to ``ml_backend.prelabel.webhook``) and
``GET /metrics``. HTTP basic auth guards every route when BASIC_AUTH_USER and BASIC_AUTH_PASS are set. Errors are
JSON ``{"error": "..."}`` with a message, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ml_backend.model import SongModel, get_model
from ml_backend.prelabel import jobqueue, worker
from ml_backend.prelabel import webhook as webhook_module
from ml_backend.prediction.predictions import ConfigError
from ml_backend.settings import Settings

log = logging.getLogger(__name__)

STATE_KEY = "ls_acestep"  # app.extensions key of this app's AppState


@dataclass
class AppState:
    """Per-app state: the settings, request counters and the (lazily opened) job queue."""

    settings: Settings
    requests: Counter = field(default_factory=Counter)  # route -> count
    errors: Counter = field(default_factory=Counter)  # route -> 4xx/5xx count
    queue: object = None
    queue_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def model(self) -> SongModel:
        return get_model(self.settings)


def configure_logging(level: str) -> None:
    """Log to stderr at LOG_LEVEL unless the host process (gunicorn, pytest) already configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    logging.getLogger("ml_backend").setLevel(getattr(logging, level.upper(), logging.INFO))


def error(message: str, status: int) -> tuple[Response, int]:
    """A JSON error body ``{"error": message}`` with the HTTP status."""
    return jsonify({"error": message}), status


def route_label() -> str:
    """The current request's route as the metrics count it: its rule ("/predict"), "(no route)" for a path no
    route serves, so that clients sending made-up paths neither grow the counters without bound nor write into
    the metrics text."""
    return request.url_rule.rule if request.url_rule is not None else "(no route)"


def basic_auth_ok(settings: Settings, authorization) -> bool:
    """True when auth is off, or the request's basic credentials match (compared in constant time)."""
    if not settings.basic_auth_user:
        return True
    if authorization is None or authorization.type != "basic":
        return False
    user_ok = hmac.compare_digest((authorization.username or "").encode(), settings.basic_auth_user.encode())
    pass_ok = hmac.compare_digest((authorization.password or "").encode(), settings.basic_auth_pass.encode())
    return user_ok and pass_ok


def json_body() -> dict:
    """The request's JSON object; raises ValueError with a message for a body that is not one, and 413 for a
    chunked body that reaches MAX_REQUEST_MB (werkzeug stops reading it at the limit without saying so)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit and request.content_length is None and len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise ValueError("the request body is not valid JSON; send Content-Type: application/json and a JSON object")
    if not isinstance(body, dict):
        raise ValueError(f"the request body is JSON {type(body).__name__}, expected an object")
    return body


def queue_status(state: AppState) -> dict:
    """The pre-labeling queue's part of /health: ``queue_length``, its counts and recently failed tasks. Empty
    when the queue cannot be opened (a broken queue must not make the backend look down)."""
    try:
        with state.queue_lock:
            if state.queue is None:
                state.queue = jobqueue.open_queue(state.settings)
        return dict(state.queue.health())
    except Exception as exc:
        log.warning("pre-labeling queue status unavailable: %s", exc)
        return {}


def prometheus_text(state: AppState, model: SongModel) -> str:
    """Counters in Prometheus text exposition format (per process: each gunicorn worker counts its own)."""
    lines = [
        "# HELP ls_acestep_requests_total HTTP requests by route.",
        "# TYPE ls_acestep_requests_total counter",
    ]
    lines += [f'ls_acestep_requests_total{{route="{route}"}} {count}'
              for route, count in sorted(state.requests.items())]
    lines += ["# TYPE ls_acestep_request_errors_total counter"]
    lines += [f'ls_acestep_request_errors_total{{route="{route}"}} {count}'
              for route, count in sorted(state.errors.items())]
    for name, value, help_text in metric_values(model):
        lines += [f"# HELP ls_acestep_{name} {help_text}", f"# TYPE ls_acestep_{name} counter",
                  f"ls_acestep_{name} {value}"]
    counts = queue_status(state).get("queue") or {}
    if counts:
        lines += ["# HELP ls_acestep_queue_jobs Pre-labeling jobs by state (shared by all processes).",
                  "# TYPE ls_acestep_queue_jobs gauge"]
        lines += [f'ls_acestep_queue_jobs{{state="{k}"}} {v}' for k, v in sorted(counts.items())]
    return "\n".join(lines) + "\n"


def metric_values(model: SongModel) -> list[tuple[str, float, str]]:
    """(name, value, help) of the model's counters."""
    s, c = model.stats, model.cache.stats
    return [
        ("predictions_total", s.predictions, "Songs predicted (cache misses that produced a prediction)."),
        ("prediction_failures_total", s.failures, "Tasks answered with an empty prediction."),
        ("windows_total", s.windows, "Audio windows sent to the engine."),
        ("predict_seconds_total", round(s.seconds, 3), "Seconds spent in /predict."),
        ("cache_hits_total", c.hits, "Predictions served from the cache."),
        ("cache_misses_total", c.misses, "Cache lookups that found nothing."),
    ]


def remove_stale_downloads(settings: Settings) -> None:
    """Delete partial downloads a crash left in MODEL_DIR/media (those another live process is writing stay)."""
    from pathlib import Path

    from ls_acestep.media import remove_stale_parts
    from ml_backend.model import MEDIA_CACHE

    removed = remove_stale_parts(Path(settings.model_dir) / MEDIA_CACHE)
    if removed:
        log.info("removed %d partial download(s) left in %s", removed, Path(settings.model_dir) / MEDIA_CACHE)


def start_prelabeling(settings: Settings) -> None:
    """Start this process's pre-labeling queue workers: threads must be started after the fork, in the process
    that serves."""
    try:
        worker.start_background_workers(settings)
    except Exception:  # the queue is optional; /predict works without it
        log.exception("pre-labeling workers did not start")


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app; settings from the environment when not given (raises SettingsError naming a bad one)."""
    settings = settings or Settings.from_env()
    settings.check()
    configure_logging(settings.log_level)
    app = Flask("ml_backend")
    app.json.sort_keys = False
    # Label Studio sends task data, not audio: a larger body is refused (413) before it is read.
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_request_mb * (1 << 20))
    remove_stale_downloads(settings)
    state = AppState(settings=settings)
    app.extensions[STATE_KEY] = state

    @app.before_request
    def _authenticate():
        state.requests[route_label()] += 1
        if not basic_auth_ok(settings, request.authorization):
            response, status = error("authentication required: use the BASIC_AUTH_USER/BASIC_AUTH_PASS "
                                     "credentials (Label Studio: Model settings > Basic auth)", 401)
            response.headers["WWW-Authenticate"] = 'Basic realm="ls-acestep"'
            return response, status
        return None

    @app.after_request
    def _count_errors(response):
        if response.status_code >= 400:
            state.errors[route_label()] += 1
        return response

    @app.errorhandler(413)
    def _too_large(exc):
        return error(f"the request body is larger than MAX_REQUEST_MB={settings.max_request_mb:g}; send fewer "
                     "tasks per request (or raise MAX_REQUEST_MB)", 413)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s", request.path)
        return error(f"internal error ({type(exc).__name__}: {exc}); see the backend log", 500)

    def status_body() -> dict:
        model = state.model
        body = {
            "status": "UP",
            "model_class": type(model).__name__,
            "engine": settings.engine,
            "model_id": "" if settings.engine == "dsp" else settings.model_id,
            "model_version": model.model_version(),
            "model_loaded": model.loaded,
        }
        if model.load_error:
            body["model_error"] = model.load_error
        body.update(queue_status(state))
        return body

    @app.get("/")
    @app.get("/health")
    def health():
        return jsonify(status_body())

    @app.post("/setup")
    def setup():
        # Label Studio sends {"project", "schema", "hostname", "access_token", ...}; nothing to load here.
        try:
            json_body()
        except ValueError as exc:
            return error(str(exc), 400)
        return jsonify({"model_version": state.model.model_version()})

    @app.post("/predict")
    def predict():
        try:
            body = json_body()
        except ValueError as exc:
            return error(str(exc), 400)
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            return error('the request has no "tasks" list; send {"tasks": [...], "label_config": "<View>..."}', 400)
        label_config = body.get("label_config") or body.get("schema") or ""
        started = time.perf_counter()
        try:
            results = state.model.predict(tasks, label_config)
        except ConfigError as exc:
            return error(f"project {body.get('project', '?')}: {exc}", 400)
        log.info("predicted %d task(s) in %.1f s", len(tasks), time.perf_counter() - started)
        return jsonify({"results": results})

    @app.post("/webhook")
    def webhook():
        try:
            payload = json_body()
        except ValueError as exc:
            return error(str(exc), 400)
        try:
            return jsonify(webhook_module.handle_webhook(payload, settings))
        except ValueError as exc:  # webhook.PayloadError: an id that is not one
            return error(str(exc), 400)
        except jobqueue.QueueError as exc:
            # Label Studio retries a failed delivery; answering 200 here would drop the tasks
            log.error("webhook: %s; answering 503 so that the delivery is retried", exc)
            return error(f"{exc}; the tasks were not queued, retry later", 503)

    @app.get("/metrics")
    def metrics():
        model = state.model
        if request.args.get("format") == "json" or request.accept_mimetypes.best == "application/json":
            body = {"requests": dict(state.requests), "errors": dict(state.errors)}
            body.update({name: value for name, value, _ in metric_values(model)})
            body["queue"] = queue_status(state).get("queue") or {}
            return jsonify(body)
        return Response(prometheus_text(state, model), mimetype="text/plain; version=0.0.4")

    return app
