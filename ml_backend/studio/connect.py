"""``ls-acestep connect``: make sure Label Studio has the song project (the shipped labeling config), the ML backend
connected to it with its pre-labeling webhook and, optionally, a local-files storage over the songs folder, synced.
Idempotent: a second run finds what the first one made and changes nothing (it only syncs the storage again, which
imports new files). Runs as the ``init`` service of docker-compose.yml, or by hand::

    ls-acestep connect --ls-url http://localhost:8080 --ls-token TOKEN --backend-url http://ml-backend:9090

The backend URL is the one *Label Studio* uses to reach the backend (on the compose network:
http://ml-backend:9090), not the one your browser uses. ``ls-acestep up`` runs the same steps (ensure_project,
ensure_backend, ensure_webhook) against the Label Studio it starts.

Only the standard library and click are imported at module level: the container healthcheck imports
basic_auth_header from here, and ``ls-acestep --help`` stays fast.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

BACKEND_TITLE = "ls-acestep"  # the title our ML backend connections carry; an old one is recognised by it
STORAGE_TITLE = "songs"


class ConnectError(Exception):
    """A set-up step failed; the message says which step, what Label Studio answered and what to do."""


@dataclass(frozen=True)
class Plan:
    """What must exist in Label Studio after the set-up."""

    label_studio_url: str
    api_key: str
    backend_url: str  # as Label Studio reaches the backend
    project_title: str = "Songs"
    label_config: str = ""  # empty: the shipped config
    storage_path: str = ""  # folder inside Label Studio's container, under its LOCAL_FILES_DOCUMENT_ROOT; "" = none
    basic_auth_user: str = ""
    basic_auth_pass: str = ""


@dataclass
class Outcome:
    """Ids of what the set-up found or created."""

    project_id: int
    project_created: bool
    backend_id: int
    backend_change: str = "found"  # found | created | moved from <old URL>
    webhook_id: int = 0
    webhook_change: str = "found"  # found | created | moved to the new URL | given the basic-auth header
    storage_id: int | None = None
    storage_created: bool = False
    tasks_imported: int | None = None


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    """HTTP basic-auth header for user/password, or no header when either is empty."""
    if not (user and password):
        return {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def audio_regex() -> str:
    """Label Studio matches a storage's regex_filter against each file's path; only audio becomes a task."""
    from label_config.sidecar import AUDIO_EXTENSIONS

    return r"(?i).*\.(" + "|".join(ext.lstrip(".") for ext in AUDIO_EXTENSIONS) + r")$"


# ---- waiting for the services ----------------------------------------------------------------------------------


def wait_for_health(name: str, url: str, timeout_s: float, interval_s: float = 2.0,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> None:
    """Poll ``url + /health`` until it answers 200, for at most timeout_s seconds (every interval_s seconds)."""
    import requests

    health = url.rstrip("/") + "/health"
    deadline = clock() + timeout_s
    while True:
        try:
            response = requests.get(health, timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if clock() >= deadline:
            raise ConnectError(f"{name} at {url} did not answer {health} within {timeout_s:g} s (last: {last}); "
                               "is it running? With docker compose: `docker compose logs label-studio`")
        sleep(interval_s)


# ---- Label Studio API steps ------------------------------------------------------------------------------------


def find_project(client, title: str):
    """The first project whose title is exactly ``title``, or None. Label Studio's ``title`` filter matches
    substrings, so the exact comparison happens here; pages are followed by the response's ``next`` link."""
    page = 1
    while True:
        pager = client.projects.list(title=title, page=page, page_size=100)
        for project in pager.items or []:
            if project.title == title:
                return project
        if not getattr(pager.response, "next", None):
            return None
        page += 1


def ensure_project(client, plan: Plan, known_id: int | None = None) -> tuple[int, bool]:
    """(project id, created?): the project ``known_id`` when it still exists (``up`` saves the id of the one it
    made), else the one titled exactly ``plan.project_title``, else a new one with ``plan.label_config`` (default:
    the shipped config). An existing project keeps its labeling config: the user may have edited it."""
    from label_config import shipped_config

    if known_id is not None:
        project = _call("looking up the saved project", lambda: client.projects.get(id=known_id), missing_ok=True)
        if project is not None:
            return project.id, False
    project = _call("looking up the project", lambda: find_project(client, plan.project_title))
    if project is not None:
        return project.id, False
    created = _call("creating the project", lambda: client.projects.create(
        title=plan.project_title, label_config=plan.label_config or shipped_config(),
        description="Songs pre-annotated by ls-acestep"))
    return created.id, True


def _same_url(a: str | None, b: str) -> bool:
    return (a or "").rstrip("/") == b.rstrip("/")


def ensure_backend(client, project_id: int, plan: Plan) -> tuple[int, str, str]:
    """(ML backend id, what changed, its previous URL or ""): connect ``plan.backend_url`` to the project unless
    it already is. An earlier connection of ours (titled BACKEND_TITLE) at another URL, e.g. ``up`` on another
    --backend-port, is pointed at the new URL instead of leaving a dead backend beside the new one."""
    existing = list(_call("listing the project's ML backends", lambda: client.ml.list(project=project_id)) or [])
    for backend in existing:
        if _same_url(backend.url, plan.backend_url):
            return backend.id, "found", ""
    options: dict = {"title": BACKEND_TITLE, "is_interactive": False}
    if plan.basic_auth_user:
        options.update(auth_method="BASIC_AUTH", basic_auth_user=plan.basic_auth_user,
                       basic_auth_pass=plan.basic_auth_pass)
    ours = next((b for b in existing if b.title == BACKEND_TITLE), None)
    if ours is not None:
        _call("pointing the ML backend at its new URL", lambda: client.ml.update(
            id=ours.id, url=plan.backend_url, **options))
        return ours.id, f"moved from {ours.url}", ours.url
    created = _call("connecting the ML backend", lambda: client.ml.create(
        url=plan.backend_url, project=project_id, **options))
    return created.id, "created", ""


def ensure_webhook(client, project_id: int, plan: Plan, old_backend_url: str = "") -> tuple[int, str]:
    """(webhook id, what changed) for the webhook that brings TASKS_CREATED to the backend's /webhook (pre-labeling
    on import). Label Studio creates it when a backend is connected, but silently skips it when its SSRF guard
    refuses the address, and never adds the backend's basic-auth header (the backend then answers 401): create it
    when missing, add the header when the backend has basic auth. The webhook of a backend that moved from
    ``old_backend_url`` follows it, so imports are not also sent to the old address."""
    url = plan.backend_url + "/webhook"
    headers = basic_auth_header(plan.basic_auth_user, plan.basic_auth_pass)
    hooks = list(_call("listing the project's webhooks", lambda: client.webhooks.list(project=str(project_id))) or [])
    hook = next((h for h in hooks if _same_url(h.url, url)), None)
    old = next((h for h in hooks if old_backend_url and _same_url(h.url, old_backend_url.rstrip("/") + "/webhook")),
               None)
    if hook is None and old is not None:
        _call("moving the pre-labeling webhook to the new URL", lambda: client.webhooks.update(
            id=old.id, url=url, headers={**dict(old.headers or {}), **headers}))
        return old.id, "moved to the new URL"
    if hook is None:
        created = _call("creating the pre-labeling webhook", lambda: client.webhooks.create(
            url=url, project=project_id, send_payload=True, send_for_all_actions=True, headers=headers))
        return created.id, "created"
    current = dict(hook.headers or {})
    if headers and current.get("Authorization") != headers["Authorization"]:
        _call("adding basic auth to the pre-labeling webhook",
              lambda: client.webhooks.update(id=hook.id, headers={**current, **headers}))
        return hook.id, "given the basic-auth header"
    return hook.id, "found"


def ensure_storage(client, project_id: int, plan: Plan) -> tuple[int, bool, int | None]:
    """(storage id, created?, tasks imported by this sync) for a local-files storage over plan.storage_path.
    Files become tasks with ``use_blob_urls`` (one task per audio file, served at /data/local-files/?d=...)."""
    storages = _call("listing local-files storages", lambda: client.import_storage.local.list(project=project_id))
    match = next((s for s in storages or [] if _same_url(s.path, plan.storage_path)), None)
    created = match is None
    if created:
        match = _call("adding the songs folder as local-files storage", lambda: client.import_storage.local.create(
            project=project_id, path=plan.storage_path, title=STORAGE_TITLE, regex_filter=audio_regex(),
            use_blob_urls=True, recursive_scan=True))
    synced = _call("syncing the songs folder", lambda: client.import_storage.local.sync(id=match.id))
    return match.id, created, getattr(synced, "last_sync_count", None)


def connect(client, plan: Plan) -> Outcome:
    """Run every step in order; each one is idempotent."""
    project_id, project_created = ensure_project(client, plan)
    backend_id, backend_change, old_url = ensure_backend(client, project_id, plan)
    outcome = Outcome(project_id, project_created, backend_id, backend_change)
    outcome.webhook_id, outcome.webhook_change = ensure_webhook(client, project_id, plan, old_url)
    if plan.storage_path:
        outcome.storage_id, outcome.storage_created, outcome.tasks_imported = ensure_storage(client, project_id, plan)
    return outcome


# ---- errors ----------------------------------------------------------------------------------------------------

# Substrings of Label Studio's answers -> what to do about them.
_HINTS = (
    ("reserved network address",
     "Label Studio refuses backends on private addresses by default: start it with ML_BLOCK_LOCAL_IP=false and "
     "USE_DEFAULT_BANNED_SUBNETS=false (docker-compose.yml sets both)"),
    ("health check failed",
     "Label Studio cannot reach the backend at that URL: it must be the address Label Studio sees "
     "(http://ml-backend:9090 inside docker compose); check `docker compose logs ml-backend`"),
    ("doesn't look like a valid ML backend",
     "the backend answered /health but its /setup failed: check `docker compose logs ml-backend`"),
    ("LOCAL_FILES",
     "the songs folder must lie under Label Studio's LOCAL_FILES_DOCUMENT_ROOT, with "
     "LOCAL_FILES_SERVING_ENABLED=true"),
    ("does not exist",
     "the songs folder is not mounted in the label-studio container: check SONGS_DIR in .env"),
)


def _call(action: str, step: Callable, missing_ok: bool = False):
    """Run one API step; turn SDK and network errors into a ConnectError naming the step and the remedy. With
    missing_ok, a 404 answer gives None."""
    from label_studio_sdk.core.api_error import ApiError

    try:
        return step()
    except ApiError as exc:
        if missing_ok and exc.status_code == 404:
            return None
        raise ConnectError(explain(action, exc.status_code, exc.body)) from None
    except Exception as exc:  # httpx transport errors and the like: the SDK does not wrap them
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpcore"):
            raise
        raise ConnectError(f"{action}: cannot reach Label Studio ({type(exc).__name__}: {exc})") from None


def explain(action: str, status: int | None, body) -> str:
    """One message for a failed API call: the step, Label Studio's answer and, when recognised, what to do."""
    detail = _detail(body)
    if status in (401, 403):
        return (f"{action}: Label Studio refused the token (HTTP {status}: {detail}). Set LABEL_STUDIO_API_KEY "
                "to a token from Account & Settings; a legacy token works only with "
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true")
    message = f"{action}: Label Studio answered HTTP {status}: {detail}"
    hints = [hint for needle, hint in _HINTS if needle.lower() in detail.lower()]
    return message + (f" -> {hints[0]}" if hints else "")


def _detail(body) -> str:
    """Flatten Label Studio's error body to text: {"detail": "Validation error", "validation_errors": {"url":
    ["..."]}}, {"detail": "..."}, a field -> messages dict, or plain text."""
    if isinstance(body, dict):
        if body.get("validation_errors"):
            return _detail(body["validation_errors"])
        if "detail" in body:
            return _detail(body["detail"])
        return "; ".join(_detail(v) if k == "non_field_errors" else f"{k}: {_detail(v)}" for k, v in body.items())
    if isinstance(body, list):
        return " ".join(_detail(v) for v in body)
    return re.sub(r"<[^>]+>", "", str(body))  # Label Studio puts HTML links in some messages


# ---- command line ----------------------------------------------------------------------------------------------


def describe(outcome: Outcome, plan: Plan) -> str:
    """Human summary of an Outcome."""
    verb = {True: "created", False: "found"}
    lines = [f"project {outcome.project_id} '{plan.project_title}' {verb[outcome.project_created]}",
             f"ML backend {outcome.backend_id} at {plan.backend_url} {outcome.backend_change}",
             f"webhook {outcome.webhook_id} to {plan.backend_url}/webhook {outcome.webhook_change}"]
    if outcome.storage_id is not None:
        imported = "" if outcome.tasks_imported is None else f", {outcome.tasks_imported} new task(s)"
        lines.append(f"local-files storage {outcome.storage_id} over {plan.storage_path} "
                     f"{verb[outcome.storage_created]}, synced{imported}")
    lines.append(f"open /projects/{outcome.project_id}/data in Label Studio")
    return "\n".join(lines)


@click.command("connect")
@click.option("--ls-url", envvar="LABEL_STUDIO_URL", required=True, show_envvar=True,
              help="Label Studio base URL as this process reaches it.")
@click.option("--ls-token", envvar="LABEL_STUDIO_API_KEY", required=True, show_envvar=True,
              help="Legacy token or personal access token.")
@click.option("--backend-url", envvar="ML_BACKEND_URL", required=True, show_envvar=True,
              help="Backend URL as Label Studio reaches it, e.g. http://ml-backend:9090.")
@click.option("--project-title", envvar="PROJECT_TITLE", default="Songs", show_default=True, show_envvar=True)
@click.option("--storage-path", envvar="SONGS_STORAGE_PATH", default="", show_envvar=True,
              help="Songs folder inside Label Studio's container (under LOCAL_FILES_DOCUMENT_ROOT) to add as "
                   "local-files storage and sync; empty = skip.")
@click.option("--label-config", "label_config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labeling config XML for a new project, e.g. from `ls-acestep label-config --sections ...` "
                   "(default: the shipped one). An existing project keeps its config.")
@click.option("--basic-auth-user", envvar="BASIC_AUTH_USER", default="", show_envvar=True,
              help="The backend's basic-auth user, when it has one.")
@click.option("--basic-auth-pass", envvar="BASIC_AUTH_PASS", default="", show_envvar=True)
@click.option("--wait", "wait_s", envvar="CONNECT_WAIT_SECONDS", type=float, default=600.0, show_default=True,
              show_envvar=True, help="Seconds to wait for Label Studio to answer /health.")
def connect_command(ls_url, ls_token, backend_url, project_title, storage_path, label_config_file, basic_auth_user,
                    basic_auth_pass, wait_s) -> None:
    """Create the song project in Label Studio and connect the ls-acestep backend to it (idempotent)."""
    from ls_acestep.media import MediaError, make_client

    plan = Plan(label_studio_url=ls_url.rstrip("/"), api_key=ls_token.strip(), backend_url=backend_url.rstrip("/"),
                project_title=project_title, storage_path=storage_path.rstrip("/"),
                label_config=label_config_file.read_text(encoding="utf-8") if label_config_file else "",
                basic_auth_user=basic_auth_user, basic_auth_pass=basic_auth_pass)
    try:
        # Label Studio itself checks the backend's /health when it is connected (and says so if it fails), so
        # only Label Studio is waited for here: the backend URL may not be reachable from where this runs.
        wait_for_health("Label Studio", plan.label_studio_url, wait_s)
        outcome = connect(make_client(plan.label_studio_url, plan.api_key), plan)
    except (ConnectError, MediaError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(describe(outcome, plan))

