"""ml_backend/studio/connect.py (`ls-acestep connect`, the stack's `init` step) against a local stand-in for Label Studio's REST API that records
every call, so the tests pin the exact requests label-studio-sdk sends. The stand-in answers the way Label Studio
1.23 does: paginated project lists that 404 past the last page, error bodies with `validation_errors`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from label_config import shipped_config
from ml_backend.studio import connect

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "legacy-token-for-tests"
BACKEND = "http://ml-backend:9090"
SONGS = "/label-studio/files/songs"


@dataclass
class Call:
    method: str
    path: str
    query: dict
    body: dict | None
    authorization: str


@dataclass
class FakeLabelStudio:
    """The slice of Label Studio's API the set-up uses, with its state."""

    projects: list = field(default_factory=list)
    backends: list = field(default_factory=list)
    storages: list = field(default_factory=list)
    webhooks: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    ml_error: str = ""  # when set, POST /api/ml/ fails validation with this message
    auto_webhook: bool = True  # Label Studio adds <backend>/webhook when a backend is connected (if its guard allows)
    webhook_error: str = ""
    storage_error: str = ""
    new_files: int = 3  # tasks the first sync imports

    def api_calls(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls if c.path.startswith("/api/")]

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, object]:
        if path == "/health":
            return 200, {"status": "UP"}
        if method == "GET" and path == "/api/projects/":
            return self._project_page(query)
        if method == "GET" and path.startswith("/api/projects/"):
            project = next((p for p in self.projects if p["id"] == int(path.split("/")[-2])), None)
            return (200, project) if project else (404, {"detail": "Not found."})
        if method == "POST" and path == "/api/projects/":
            project = {"id": len(self.projects) + 1, "title": body["title"], "label_config": body["label_config"]}
            self.projects.append(project)
            return 201, project
        if method == "GET" and path == "/api/ml/":
            return 200, [b for b in self.backends if b["project"] == int(query["project"])]
        if method == "POST" and path == "/api/ml/":
            if self.ml_error:
                return 400, _validation_error("url", self.ml_error)
            backend = {**body, "id": len(self.backends) + 1, "state": "CO"}
            self.backends.append(backend)
            if self.auto_webhook:
                self._add_webhook({"url": body["url"] + "/webhook", "project": body["project"], "headers": {},
                                   "send_payload": True, "send_for_all_actions": True})
            return 201, backend
        if method == "PATCH" and path.startswith("/api/ml/"):
            backend = next(b for b in self.backends if b["id"] == int(path.rstrip("/").split("/")[-1]))
            backend.update(body)
            return 200, backend
        if method == "GET" and path == "/api/webhooks/":
            return 200, [w for w in self.webhooks if w["project"] == int(query["project"])]
        if method == "POST" and path == "/api/webhooks/":
            if self.webhook_error:
                return 400, _validation_error("url", self.webhook_error)
            return 201, self._add_webhook(body)
        if method == "PATCH" and path.startswith("/api/webhooks/"):
            hook = next(w for w in self.webhooks if w["id"] == int(path.split("/")[-2]))
            hook.update(body)
            return 200, hook
        if method == "GET" and path == "/api/storages/localfiles/":
            return 200, [s for s in self.storages if s["project"] == int(query["project"])]
        if method == "POST" and path == "/api/storages/localfiles/":
            if self.storage_error:
                return 400, _validation_error("non_field_errors", self.storage_error)
            storage = {**body, "id": len(self.storages) + 1, "type": "localfiles", "last_sync_count": None}
            self.storages.append(storage)
            return 201, storage
        if method == "POST" and path.startswith("/api/storages/localfiles/") and path.endswith("/sync"):
            storage = next(s for s in self.storages if s["id"] == int(path.split("/")[-2]))
            storage["last_sync_count"], self.new_files = self.new_files, 0
            return 200, storage
        return 404, {"detail": "Not found."}

    def _add_webhook(self, body: dict) -> dict:
        hook = {**body, "id": len(self.webhooks) + 1, "is_active": True, "actions": []}
        self.webhooks.append(hook)
        return hook

    def _project_page(self, query: dict) -> tuple[int, object]:
        title = query.get("title", "").lower()
        matching = [p for p in self.projects if title in p["title"].lower()]
        page, size = int(query.get("page", 1)), int(query.get("page_size", 30))
        chunk = matching[(page - 1) * size: page * size]
        if page > 1 and not chunk:
            return 404, {"detail": "Invalid page."}  # Django REST framework's page-number pagination
        more = page * size < len(matching)
        return 200, {"count": len(matching), "next": f"http://x/api/projects/?page={page + 1}" if more else None,
                     "previous": None, "results": chunk}


def _validation_error(field_name: str, message: str) -> dict:
    """Label Studio's error body for a serializer validation error."""
    return {"id": "0d4c", "status_code": 400, "version": "1.23.2", "detail": "Validation error",
            "exc_info": None, "validation_errors": {field_name: [message]}}


@pytest.fixture()
def fake_ls():
    state = FakeLabelStudio()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            auth = self.headers.get("Authorization", "")
            state.calls.append(Call(self.command, parts.path, query, body, auth))
            if parts.path.startswith("/api/") and auth != f"Token {TOKEN}":
                status, payload = 401, {"detail": "Invalid token."}
            else:
                status, payload = state.handle(self.command, parts.path, query, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def run_cli(fake: FakeLabelStudio, *extra: str, token: str = TOKEN):
    args = ["--ls-url", fake.url, "--ls-token", token, "--backend-url", BACKEND, "--wait", "5", *extra]
    return CliRunner().invoke(connect.connect_command, args, env={k: None for k in (
        "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "ML_BACKEND_URL", "PROJECT_TITLE", "SONGS_STORAGE_PATH",
        "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "CONNECT_WAIT_SECONDS")})


def test_first_run_creates_project_backend_and_storage(fake_ls):
    result = run_cli(fake_ls, "--storage-path", SONGS)
    assert result.exit_code == 0, result.output
    assert fake_ls.api_calls() == [
        ("GET", "/api/projects/"), ("POST", "/api/projects/"),
        ("GET", "/api/ml/"), ("POST", "/api/ml/"),
        ("GET", "/api/webhooks/"),
        ("GET", "/api/storages/localfiles/"), ("POST", "/api/storages/localfiles/"),
        ("POST", "/api/storages/localfiles/1/sync"),
    ]
    assert fake_ls.calls[0].path == "/health"  # waited for Label Studio first
    api = [c for c in fake_ls.calls if c.path.startswith("/api/")]
    assert {c.authorization for c in api} == {f"Token {TOKEN}"}
    assert api[0].query == {"title": "Songs", "page": "1", "page_size": "100"}
    assert api[1].body["title"] == "Songs"
    assert api[1].body["label_config"] == shipped_config()
    assert api[2].query == {"project": "1"}
    assert api[3].body == {"url": BACKEND, "project": 1, "title": "ls-acestep", "is_interactive": False}
    assert api[4].query == {"project": "1"}
    assert api[5].query == {"project": "1"}
    storage = api[6].body
    assert storage["path"] == SONGS and storage["use_blob_urls"] is True and storage["project"] == 1
    assert "project 1 'Songs' created" in result.output
    assert f"ML backend 1 at {BACKEND} created" in result.output
    assert f"webhook 1 to {BACKEND}/webhook found" in result.output
    assert "synced, 3 new task(s)" in result.output


def test_second_run_finds_everything_and_only_syncs(fake_ls):
    assert run_cli(fake_ls, "--storage-path", SONGS).exit_code == 0
    fake_ls.calls.clear()
    result = run_cli(fake_ls, "--storage-path", SONGS)
    assert result.exit_code == 0, result.output
    assert fake_ls.api_calls() == [("GET", "/api/projects/"), ("GET", "/api/ml/"), ("GET", "/api/webhooks/"),
                                   ("GET", "/api/storages/localfiles/"), ("POST", "/api/storages/localfiles/1/sync")]
    assert len(fake_ls.projects) == len(fake_ls.backends) == len(fake_ls.storages) == 1
    assert "project 1 'Songs' found" in result.output and "0 new task(s)" in result.output


def test_exact_title_is_found_on_a_later_page_without_reading_past_the_last(fake_ls):
    fake_ls.projects = [{"id": i, "title": f"Songs archive {i}", "label_config": "<View/>"} for i in range(1, 151)]
    fake_ls.projects.append({"id": 151, "title": "Songs", "label_config": "<View/>"})
    result = run_cli(fake_ls)
    assert result.exit_code == 0, result.output
    pages = lambda: [c.query["page"] for c in fake_ls.calls if c.method == "GET" and c.path == "/api/projects/"]
    assert pages() == ["1", "2"]
    assert ("POST", "/api/projects/") not in fake_ls.api_calls()
    assert fake_ls.backends[0]["project"] == 151
    # substring matches only: a new project, and no request for a page that does not exist
    fake_ls.projects.pop()
    fake_ls.calls.clear()
    assert run_cli(fake_ls).exit_code == 0
    assert pages() == ["1", "2"]
    assert fake_ls.projects[-1]["title"] == "Songs"


def test_backend_with_basic_auth_is_connected_with_its_credentials(fake_ls):
    result = run_cli(fake_ls, "--basic-auth-user", "u", "--basic-auth-pass", "p")
    assert result.exit_code == 0, result.output
    assert fake_ls.backends[0]["auth_method"] == "BASIC_AUTH"
    assert (fake_ls.backends[0]["basic_auth_user"], fake_ls.backends[0]["basic_auth_pass"]) == ("u", "p")
    # Label Studio's own webhook carries no credentials: the backend would answer 401 to every import
    patch = next(c for c in fake_ls.calls if c.method == "PATCH")
    assert patch.path == "/api/webhooks/1/"
    assert patch.body == {"headers": {"Authorization": "Basic dTpw"}}  # base64("u:p")
    assert "given the basic-auth header" in result.output
    fake_ls.calls.clear()
    assert run_cli(fake_ls, "--basic-auth-user", "u", "--basic-auth-pass", "p").exit_code == 0
    assert not [c for c in fake_ls.calls if c.method in ("POST", "PATCH") and "sync" not in c.path]


def test_missing_webhook_is_created(fake_ls):
    fake_ls.auto_webhook = False  # what Label Studio does when its SSRF guard refuses the backend's address
    result = run_cli(fake_ls)
    assert result.exit_code == 0, result.output
    post = next(c for c in fake_ls.calls if c.method == "POST" and c.path == "/api/webhooks/")
    assert post.body == {"url": f"{BACKEND}/webhook", "project": 1, "send_payload": True,
                         "send_for_all_actions": True, "headers": {}}
    assert "webhook 1 to http://ml-backend:9090/webhook created" in result.output


def test_refused_webhook_says_what_to_change(fake_ls):
    fake_ls.auto_webhook = False
    fake_ls.webhook_error = "URL resolves to a reserved network address (block: 172.16.0.0/12)"
    result = run_cli(fake_ls)
    assert result.exit_code == 1
    assert "creating the pre-labeling webhook" in result.output and "USE_DEFAULT_BANNED_SUBNETS=false" in result.output


def test_refused_backend_says_what_to_change_and_a_rerun_finishes(fake_ls):
    fake_ls.ml_error = "URL resolves to a reserved network address (block: 172.16.0.0/12)"
    result = run_cli(fake_ls)
    assert result.exit_code == 1
    assert "connecting the ML backend" in result.output
    assert "reserved network address" in result.output and "ML_BLOCK_LOCAL_IP=false" in result.output
    assert "Traceback" not in result.output
    fake_ls.ml_error = ""
    fake_ls.calls.clear()
    assert run_cli(fake_ls).exit_code == 0
    assert ("POST", "/api/projects/") not in fake_ls.api_calls()  # the project from the first try is reused
    assert len(fake_ls.backends) == 1


def test_unreachable_backend_points_at_its_logs(fake_ls):
    fake_ls.ml_error = ("Can't connect to ML backend http://ml-backend:9090, health check failed. Make sure it is up "
                        "and your firewall is properly configured.")
    result = run_cli(fake_ls)
    assert result.exit_code == 1 and "docker compose logs ml-backend" in result.output


def test_missing_songs_folder_names_the_setting(fake_ls):
    fake_ls.storage_error = f'Absolute local path "{SONGS}" does not exist'
    result = run_cli(fake_ls, "--storage-path", SONGS)
    assert result.exit_code == 1
    assert "adding the songs folder" in result.output and "SONGS_DIR" in result.output


def test_wrong_token_names_the_variable(fake_ls):
    result = run_cli(fake_ls, token="not-the-token")
    assert result.exit_code == 1
    assert "HTTP 401" in result.output and "LABEL_STUDIO_API_KEY" in result.output
    assert not fake_ls.projects


def test_label_studio_not_answering():
    result = CliRunner().invoke(connect.connect_command, ["--ls-url", "http://127.0.0.1:9", "--ls-token", TOKEN,
                                                          "--backend-url", BACKEND, "--wait", "0"])
    assert result.exit_code == 1
    assert "Label Studio at http://127.0.0.1:9 did not answer http://127.0.0.1:9/health within 0 s" in result.output


def test_wait_for_health_polls_until_the_deadline(monkeypatch):
    answers = iter([503, 503, 200])
    monkeypatch.setattr("requests.get", lambda url, timeout: type("R", (), {"status_code": next(answers)}))
    now = [0.0]
    sleeps = []
    connect.wait_for_health("Label Studio", "http://ls:8080", timeout_s=10, interval_s=2,
                            sleep=lambda s: (sleeps.append(s), now.__setitem__(0, now[0] + s)), clock=lambda: now[0])
    assert sleeps == [2, 2]
    answers = iter([503] * 10)
    with pytest.raises(connect.ConnectError, match=r"within 3 s \(last: HTTP 503\)"):
        connect.wait_for_health("Label Studio", "http://ls:8080", timeout_s=3, interval_s=2,
                                sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])


def test_compose_init_service_runs_it_with_its_environment(fake_ls, tmp_path):
    """The init service's command (`ls-acestep connect`, the console script this venv installed) with the
    environment docker-compose.yml gives it (Label Studio's address swapped for the stand-in's): the variable names
    of both must agree."""
    init = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["init"]
    from tests.test_deploy import resolve

    env = {k: str(v) for k, v in resolve(init["environment"], {"LABEL_STUDIO_USER_TOKEN": TOKEN}).items()}
    env["LABEL_STUDIO_URL"] = fake_ls.url
    script = Path(sys.executable).parent / init["command"][0]
    assert script.exists(), f"{script}: install the project into this venv (pip install -e .)"
    out = subprocess.run([str(script), *init["command"][1:]], cwd=ROOT, capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if k not in env}, **env}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert fake_ls.backends[0]["url"] == "http://ml-backend:9090"
    assert fake_ls.storages[0]["path"] == "/label-studio/files/songs"
    assert fake_ls.projects[0]["title"] == "Songs"
    assert "open /projects/1/data" in out.stdout


def test_label_studio_error_bodies_become_one_plain_line():
    """The body Label Studio 1.23.2 really sends when it cannot reach a backend (seen on a local server)."""
    body = _validation_error("non_field_errors", (
        "Can't connect to ML backend http://127.0.0.1:19399, health check failed. Make sure it is up and your "
        'firewall is properly configured. <a href="https://labelstud.io/guide/ml.html">Learn more</a> about how '
        "to set up an ML backend."))
    message = connect.explain("connecting the ML backend", 400, body)
    assert message.startswith("connecting the ML backend: Label Studio answered HTTP 400: Can't connect")
    assert "<a" not in message and "Learn more about" in message and "non_field_errors" not in message
    assert message.endswith("check `docker compose logs ml-backend`")
    assert connect.explain("x", 500, "Server Error") == "x: Label Studio answered HTTP 500: Server Error"
    assert "url: bad" in connect.explain("x", 400, {"detail": "Validation error", "validation_errors": {"url": ["bad"]}})


def test_custom_label_config_for_a_new_project(fake_ls, tmp_path):
    from label_config import render_config

    xml = render_config(("Intro", "Verse", "Chorus"), minimal=True)
    path = tmp_path / "config.xml"
    path.write_text(xml, encoding="utf-8")
    assert run_cli(fake_ls, "--label-config", str(path)).exit_code == 0
    assert fake_ls.projects[0]["label_config"] == xml
    missing = run_cli(fake_ls, "--label-config", str(tmp_path / "nope.xml"))
    assert missing.exit_code == 2 and "nope.xml" in missing.output


def test_backend_at_a_new_url_moves_our_connection_and_its_webhook(fake_ls):
    """A second set-up with another backend URL (``up`` on another --backend-port, a renamed service) points our
    earlier connection and its webhook at the new URL: no second backend, no imports sent to the dead address."""
    assert run_cli(fake_ls).exit_code == 0
    fake_ls.calls.clear()
    result = CliRunner().invoke(connect.connect_command, ["--ls-url", fake_ls.url, "--ls-token", TOKEN,
                                                          "--backend-url", "http://ml-backend:9191", "--wait", "5"])
    assert result.exit_code == 0, result.output
    assert fake_ls.api_calls() == [("GET", "/api/projects/"), ("GET", "/api/ml/"), ("PATCH", "/api/ml/1"),
                                   ("GET", "/api/webhooks/"), ("PATCH", "/api/webhooks/1/")]
    assert [b["url"] for b in fake_ls.backends] == ["http://ml-backend:9191"]
    assert [w["url"] for w in fake_ls.webhooks] == ["http://ml-backend:9191/webhook"]
    assert f"ML backend 1 at http://ml-backend:9191 moved from {BACKEND}" in result.output
    assert "webhook 1 to http://ml-backend:9191/webhook moved to the new URL" in result.output


def test_a_saved_project_id_is_used_while_it_exists(fake_ls):
    """``up`` passes the id it saved: that project wins over the title; once deleted, the title is looked up."""
    from ls_acestep.media import make_client

    fake_ls.projects = [{"id": 1, "title": "Songs", "label_config": "<View/>"},
                        {"id": 2, "title": "Renamed by the user", "label_config": "<View/>"}]
    client, plan = make_client(fake_ls.url, TOKEN), connect.Plan(fake_ls.url, TOKEN, BACKEND)
    assert connect.ensure_project(client, plan, known_id=2) == (2, False)
    assert fake_ls.api_calls() == [("GET", "/api/projects/2/")]
    fake_ls.projects.pop()
    assert connect.ensure_project(client, plan, known_id=2) == (1, False)
    fake_ls.projects.clear()
    assert connect.ensure_project(client, plan, known_id=2) == (1, True)
    assert fake_ls.projects[0]["label_config"] == shipped_config()
