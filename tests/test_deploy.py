"""The docker-compose stack, checked without a Docker engine: the files parse, every service has what it needs to
start in order, every setting the code reads reaches the containers and is documented, and the image's command
really serves the backend (run here as a plain process)."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from ml_backend.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
VLLM_OVERRIDE = ROOT / "deploy" / "compose.vllm.yml"
DOCKERFILE = ROOT / "ml_backend" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
# Where the variables are documented: the backend's settings table, the stack's variables.
VARIABLE_DOCS = (ROOT / "docs" / "backend.md", ROOT / "docs" / "deploy-gpu.md")
WSGI_TARGET = "ml_backend._wsgi:app"

# Code that reads the environment (the backend, its helpers, the CLIs, the deploy scripts).
CODE_DIRS = ("ml_backend", "ls_acestep", "converters", "deploy")
# The init service's command (`ls-acestep connect`): its variables go to that service, not to the backend.
INIT_CODE = "ml_backend/studio/connect.py"
# Names the code reads that are not settings of ours.
NOT_SETTINGS = {"WERKZEUG_RUN_MAIN": "set by Flask's reloader in its child process"}
# Backend settings that docker-compose.yml fixes for the container instead of taking them from .env.
FIXED_IN_COMPOSE = {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LOCAL_FILES_DOCUMENT_ROOT", "MODEL_DIR", "HF_HOME",
                    "PORT"}
# Settings fields whose compose value differs from the library default on purpose.
COMPOSE_DIFFERS = {"label_studio_url": "http://label-studio:8080", "local_files_document_root": "/label-studio/files",
                   "model_dir": Path("/data/model_dir"), "openai_base_url": "http://vllm:8000/v1",
                   "queue_url": "redis://redis:6379/0",
                   "lyrics_engine": "whisper"}  # the stack has a GPU: lyrics on (docs/lyrics.md)
SECRETS = {"LABEL_STUDIO_PASSWORD": "pw-for-tests", "LABEL_STUDIO_USER_TOKEN": "token-for-tests"}


# ---- helpers: compose interpolation, .env files, Dockerfile and .dockerignore parsing -------------------------


_VAR = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${V}, $V, ${V:-default}, ${V-default}, ${V:?error}, ${V?error}, $$."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg, value = m.group("op"), m.group("arg"), env.get(name)
        missing = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if missing else value
        if op in (":?", "?"):
            if missing:
                raise LookupError(f"{name}: {arg}")
            return value
        return value or ""

    return _VAR.sub(sub, text)


def resolve(node, env: dict[str, str]):
    """Interpolate every string of a parsed compose document."""
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node


def variables_in(text: str) -> set[str]:
    """Names of the variables a compose file substitutes."""
    return {m.group("braced") or m.group("bare") for m in _VAR.finditer(text) if m.group(0) != "$$"}


def read_env_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """(active VAR=value lines, names only mentioned in comment lines starting with `# VAR=`)."""
    active, commented = {}, set()
    for line in path.read_text().splitlines():
        if m := re.match(r"([A-Z][A-Z0-9_]*)=(.*)$", line):
            active[m.group(1)] = m.group(2)
        elif m := re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line):
            commented.add(m.group(1))
    return active, commented


def env_names_in_code() -> dict[str, set[str]]:
    """Environment variable names read anywhere in CODE_DIRS -> the files reading them."""
    pattern = re.compile(r"""(?:environ\.get|getenv|_env|_env_int|_env_float|_int_env)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
                         r"""|environ\[\s*["']([A-Z][A-Z0-9_]*)["']\s*\]"""
                         r"""|envvar=\s*\[?\s*["']([A-Z][A-Z0-9_]*)["']""")
    found: dict[str, set[str]] = {}
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for m in pattern.finditer(path.read_text(encoding="utf-8")):
                name = next(g for g in m.groups() if g)
                if name not in NOT_SETTINGS:
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def dockerignore_excludes(rel_path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves rel_path out of the build context: the last matching pattern (or a pattern matching
    one of its parent folders) decides; `!` re-includes; `**` spans folders."""
    def matches(pattern: str, path: str) -> bool:
        regex = re.escape(pattern.strip("/")).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace("\0", ".*")
        return re.fullmatch(regex, path) is not None

    parts = rel_path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if any(matches(body, c) for c in candidates):
            excluded = not negate
    return excluded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def override() -> dict:
    return yaml.safe_load(VLLM_OVERRIDE.read_text())


@pytest.fixture(scope="module")
def env_example() -> tuple[dict[str, str], set[str]]:
    return read_env_file(ENV_EXAMPLE)


def backend_env(compose: dict, extra: dict[str, str] | None = None, service: str = "ml-backend") -> dict[str, str]:
    """The backend container's environment as docker compose would set it, for .env = SECRETS + extra."""
    return {k: str(v) for k, v in resolve(compose["services"][service]["environment"],
                                          {**SECRETS, **(extra or {})}).items()}


def settings_from(env: dict[str, str], monkeypatch) -> Settings:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


# ---- the compose file ------------------------------------------------------------------------------------------


def test_compose_declares_the_stack(compose):
    services = compose["services"]
    assert {"label-studio", "ml-backend", "redis", "vllm", "init"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    assert re.fullmatch(r"heartexlabs/label-studio:1\.23\.\d+", services["label-studio"]["image"])
    assert re.fullmatch(r"redis:\d+\.\d+.*", services["redis"]["image"])
    assert services["ml-backend"]["build"] == {"context": ".", "dockerfile": "ml_backend/Dockerfile"}
    # init runs in the backend image, once
    assert services["init"]["image"] == services["ml-backend"]["image"]
    assert services["init"]["restart"] == "no"
    assert services["init"]["command"] == ["ls-acestep", "connect"]  # the image pip-installs the project
    assert services["init"]["healthcheck"] == {"disable": True}  # not the backend: no /health to probe


@pytest.mark.parametrize("name, container_port", [("label-studio", 8080), ("ml-backend", 9090), ("vllm", 8000)])
def test_services_publish_their_ports(compose, name, container_port):
    ports = resolve(compose["services"][name]["ports"], SECRETS)
    assert any(p.rsplit(":", 1)[-1] == str(container_port) for p in ports), ports


@pytest.mark.parametrize("name", ["label-studio", "ml-backend", "ml-backend-2", "redis", "vllm"])
def test_long_running_services_have_healthcheck_volumes_and_restart(compose, name):
    service = compose["services"][name]
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    assert service["volumes"], name
    assert service["restart"] == "unless-stopped"
    declared = set(compose["volumes"])
    for volume in resolve(service["volumes"], SECRETS):
        source = volume.split(":")[0]
        assert source.startswith(("/", ".")) or source in declared, f"{name}: volume {source} is not declared"


@pytest.mark.parametrize("name", ["label-studio", "vllm"])
def test_http_healthchecks_hit_health(compose, name):
    assert "/health" in " ".join(compose["services"][name]["healthcheck"]["test"])


@pytest.mark.parametrize("name", ["ml-backend", "ml-backend-2", "vllm"])
def test_gpu_is_reserved(compose, name):
    devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    device = resolve(devices[0], SECRETS)
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert ("count" in device) != ("device_ids" in device)  # Docker refuses both at once
    assert all(re.fullmatch(r"\d+(,\d+)*", d) for d in device.get("device_ids", []))


def test_replicas_use_different_gpus_and_the_shared_queue_and_cache(compose):
    first, second = (backend_env(compose, service=s) for s in ("ml-backend", "ml-backend-2"))
    assert first == second
    assert first["QUEUE_URL"].startswith("redis://redis:")
    services = compose["services"]
    assert services["ml-backend"]["volumes"] == services["ml-backend-2"]["volumes"]
    gpu = lambda s: resolve(services[s]["deploy"], SECRETS)["resources"]["reservations"]["devices"][0]["device_ids"]
    assert gpu("ml-backend") != gpu("ml-backend-2")
    assert services["ml-backend-2"]["profiles"] == ["replicas"]
    assert "ports" not in services["ml-backend-2"]  # a fixed host port would clash; it works from the queue


def test_services_start_in_order(compose, override):
    services = compose["services"]
    assert services["ml-backend"]["depends_on"] == {"label-studio": {"condition": "service_healthy"},
                                                    "redis": {"condition": "service_healthy"}}
    assert services["init"]["depends_on"] == {"label-studio": {"condition": "service_healthy"},
                                              "ml-backend": {"condition": "service_healthy"}}
    assert override["services"]["ml-backend"]["depends_on"] == {"vllm": {"condition": "service_healthy"}}


def test_label_studio_can_reach_the_backend_and_serve_songs(compose):
    ls = compose["services"]["label-studio"]
    env = resolve(ls["environment"], SECRETS)
    # Private compose addresses are refused and webhooks dropped unless both are off.
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["LABEL_STUDIO_USER_TOKEN"] == SECRETS["LABEL_STUDIO_USER_TOKEN"]
    assert env["LOCAL_FILES_SERVING_ENABLED"] == "true"
    root = env["LOCAL_FILES_DOCUMENT_ROOT"]
    songs_mount = next(v for v in resolve(ls["volumes"], SECRETS) if v.startswith("./songs:"))
    songs_in_ls = songs_mount.split(":")[1]
    assert Path(root) in Path(songs_in_ls).parents  # Label Studio requires a sub-folder of the root
    backend = compose["services"]["ml-backend"]
    assert songs_mount in resolve(backend["volumes"], SECRETS)  # same path in the backend: read from disk
    assert backend_env(compose)["LOCAL_FILES_DOCUMENT_ROOT"] == root
    init_env = resolve(compose["services"]["init"]["environment"], SECRETS)
    assert init_env["SONGS_STORAGE_PATH"] == songs_in_ls
    assert init_env["ML_BACKEND_URL"] == "http://ml-backend:9090"
    assert init_env["LABEL_STUDIO_URL"] == backend_env(compose)["LABEL_STUDIO_URL"] == "http://label-studio:8080"


def test_secrets_must_be_set(compose):
    with pytest.raises(LookupError, match="LABEL_STUDIO_PASSWORD"):
        resolve(compose["services"]["label-studio"]["environment"], {"LABEL_STUDIO_USER_TOKEN": "t"})
    with pytest.raises(LookupError, match="LABEL_STUDIO_USER_TOKEN"):
        resolve(compose["services"]["init"]["environment"], {})


# ---- settings: code -> compose -> .env.example -> docs --------------------------------------------------------


def test_backend_container_gets_every_setting(compose):
    env = compose["services"]["ml-backend"]["environment"]
    backend_reads = {n for n, files in env_names_in_code().items()
                     if any(f.startswith("ml_backend") and f != INIT_CODE for f in files)}
    missing = (set(ENV_VARS) | backend_reads) - set(env)
    assert not missing, f"add to the backend's environment in docker-compose.yml: {sorted(missing)}"
    for name, value in env.items():
        if name not in FIXED_IN_COMPOSE:
            assert str(value).startswith("${" + name), f"{name} should come from .env: ${{{name}:-default}}"


def test_init_container_variables_are_read_by_the_connect_step(compose):
    """Every variable compose gives the init service is one `ls-acestep connect` reads (and so is not a typo)."""
    connect_reads = {n for n, files in env_names_in_code().items() if INIT_CODE in files}
    assert {"ML_BACKEND_URL", "PROJECT_TITLE", "SONGS_STORAGE_PATH", "BASIC_AUTH_USER"} <= connect_reads
    assert set(compose["services"]["init"]["environment"]) <= connect_reads


def test_compose_defaults_are_the_settings_defaults(compose, monkeypatch):
    settings = settings_from(backend_env(compose), monkeypatch)
    defaults = Settings()
    for f in fields(Settings):
        expected = COMPOSE_DIFFERS.get(f.name, getattr(defaults, f.name))
        if f.name == "label_studio_api_key":
            expected = SECRETS["LABEL_STUDIO_USER_TOKEN"]
        assert getattr(settings, f.name) == expected, f.name


def test_vllm_profile_serves_the_model_and_switches_the_backend(compose, override, monkeypatch):
    vllm = compose["services"]["vllm"]
    assert vllm["profiles"] == ["vllm"]
    args = shlex.split(interpolate(vllm["command"], {}))
    opts = dict(zip(args[::2], args[1::2]))
    assert opts["--model"] == Settings().model_id == "Qwen/Qwen2-Audio-7B-Instruct"
    assert opts["--max-model-len"] == "4096"
    assert json.loads(opts["--limit-mm-per-prompt"]) == {"audio": 1}
    assert opts["--port"] == "8000"
    assert "HF_TOKEN" in vllm["environment"]
    assert shlex.split(interpolate(vllm["command"], {"VLLM_EXTRA_ARGS": "--data-parallel-size 2"}))[-2:] == [
        "--data-parallel-size", "2"]
    # the image: official vLLM plus its audio extra, the same release in both places
    dockerfile = (ROOT / "deploy" / vllm["build"]["dockerfile"]).read_text()
    assert "FROM vllm/vllm-openai:v${VLLM_VERSION}" in dockerfile and "vllm[audio]==${VLLM_VERSION}" in dockerfile
    built = resolve(vllm, {})
    assert built["image"].endswith(":" + built["build"]["args"]["VLLM_VERSION"])

    for service in ("ml-backend", "ml-backend-2"):
        merged = {**compose["services"][service]["environment"], **override["services"][service]["environment"]}
        settings = settings_from({k: str(v) for k, v in resolve(merged, SECRETS).items()}, monkeypatch)
        assert settings.engine == "openai"
        assert settings.openai_base_url == "http://vllm:8000/v1"
        assert settings.model_id == opts["--model"]  # the backend asks vLLM for the model it serves
    assert set(override["services"]) <= set(compose["services"])


def test_env_example_lists_every_variable(compose, env_example):
    active, commented = env_example
    listed = set(active) | commented
    compose_vars = variables_in(COMPOSE.read_text()) | variables_in(VLLM_OVERRIDE.read_text())
    needed = set(ENV_VARS) | set(env_names_in_code()) | compose_vars
    assert not needed - listed, f"add to .env.example: {sorted(needed - listed)}"
    compose_only = {"COMPOSE_FILE", "COMPOSE_PROFILES"}  # read by docker compose itself
    stale = listed - needed - compose_only
    assert not stale, f"nothing reads these .env.example variables: {sorted(stale)}"
    # each variable has a comment: the line above it is a comment or another variable of the same group
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"[A-Z][A-Z0-9_]*=", line):
            above = lines[i - 1]
            assert above.startswith("#") or re.match(r"[A-Z][A-Z0-9_]*=", above), f"explain {line} in a comment"


def test_env_example_values_are_the_compose_defaults(compose, env_example):
    active, _ = env_example
    text = COMPOSE.read_text() + VLLM_OVERRIDE.read_text()
    for name, value in active.items():
        defaults = set(re.findall(r"\$\{" + name + r":-([^}]*)\}", text))
        if defaults:
            assert defaults == {value}, f"{name}: .env.example says {value!r}, docker-compose.yml {defaults}"
        elif re.search(r"\$\{" + name + r":\?", text):
            assert value == "", f"{name} is a secret: leave it empty in .env.example"
    # so that `cp .env.example .env` + the two secrets is a complete configuration
    resolve(compose, {**active, **SECRETS})


def test_docs_mention_every_variable(env_example):
    """The backend's settings are in docs/backend.md's table, the stack's variables in docs/deploy-gpu.md."""
    docs = "\n".join(page.read_text() for page in VARIABLE_DOCS)
    active, commented = env_example
    names = set(ENV_VARS) | set(env_names_in_code()) | set(active) | commented
    missing = sorted(n for n in names if not re.search(rf"\b{n}\b", docs))
    assert not missing, f"document in docs/backend.md (a setting) or docs/deploy-gpu.md (the stack): {missing}"


# ---- the backend image -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE)


def _args(instructions, keyword) -> list[str]:
    return [rest for kw, rest in instructions if kw == keyword]


def _image_env(instructions) -> dict[str, str]:
    env = {}
    for rest in _args(instructions, "ENV"):
        env.update(dict(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", rest)))
    return env


def test_image_is_cuda_torch_with_audio_decoders(dockerfile):
    base = _args(dockerfile, "ARG")
    assert any(re.match(r"BASE_IMAGE=pytorch/pytorch:[\d.]+-cuda\d+\.\d+-cudnn\d+-runtime$", a) for a in base)
    assert _args(dockerfile, "FROM") == ["${BASE_IMAGE}"]
    apt = " ".join(r for r in _args(dockerfile, "RUN") if "apt-get install" in r)
    assert "ffmpeg" in apt and "libsndfile1" in apt


def test_image_installs_the_requirements_the_tests_use(dockerfile):
    copies, runs = _args(dockerfile, "COPY"), _args(dockerfile, "RUN")
    req_copy = copies.index("requirements.txt ./")
    assert any("pip install -r requirements.txt" in r for r in runs)
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", r) for r in runs)
    # requirements before the source: editing code does not reinstall the dependencies
    assert req_copy < copies.index(". .")
    assert "requirements.txt" in (ROOT / "pyproject.toml").read_text()  # pip install . reads the same file


def test_image_runs_as_non_root_with_volumes(dockerfile, compose):
    users = _args(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0")
    env = _image_env(dockerfile)
    assert env["WORKERS"] == "1"  # one copy of the model per GPU
    volumes = json.loads(_args(dockerfile, "VOLUME")[0])
    assert {env["MODEL_DIR"], env["HF_HOME"]} <= set(volumes)
    # numba must be able to write its cache as the non-root user: inside a volume the image hands to that user
    assert any(Path(v) in Path(env["NUMBA_CACHE_DIR"]).parents for v in volumes)
    # compose mounts its volumes where the image (and the backend's env) expects them
    backend = compose["services"]["ml-backend"]
    targets = {v.split(":")[1] for v in resolve(backend["volumes"], SECRETS)}
    assert {backend["environment"]["MODEL_DIR"], backend["environment"]["HF_HOME"]} <= targets
    assert backend["environment"]["MODEL_DIR"] == env["MODEL_DIR"]


def test_image_healthcheck_and_command(dockerfile, compose):
    health = _args(dockerfile, "HEALTHCHECK")
    assert len(health) == 1 and "deploy.healthcheck" in health[0]
    assert compose["services"]["ml-backend"]["healthcheck"]["test"] == ["CMD", "python", "-m", "deploy.healthcheck"]
    cmd = json.loads(_args(dockerfile, "CMD")[0])
    assert cmd[:2] == ["sh", "-c"]
    line = cmd[2]
    assert line.split()[-1] == WSGI_TARGET
    for flag in ("--workers ${WORKERS}", "--threads ${THREADS}", "--bind 0.0.0.0:${PORT}"):
        assert flag in line
    assert "command" not in compose["services"]["ml-backend"]  # compose runs the image's command


def test_dockerignore_sends_what_the_image_needs():
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    packages = re.search(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text()).group(1)
    needed = ["pyproject.toml", "README.md", "requirements.txt", "ml_backend/_wsgi.py", "ml_backend/studio/connect.py",
              "deploy/healthcheck.py", "label_config/song_annotation.xml"]
    needed += [f"{p.strip().strip(chr(34)).rstrip('*')}/__init__.py" for p in packages.split(",")]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not dockerignore_excludes(path, patterns), f".dockerignore leaves out {path}"
    for path in (".venv/bin/python", ".ls-venv/x", ".git/HEAD", "tests/conftest.py", "songs/a.mp3",
                 "ml_backend/__pycache__/app.cpython-311.pyc", ".env", "model_dir/cache.sqlite3"):
        assert dockerignore_excludes(path, patterns), f".dockerignore sends {path}"


# ---- the image's command, run as a plain process ---------------------------------------------------------------


def test_container_command_serves_health_behind_basic_auth(dockerfile, compose, tmp_path):
    """Start the Dockerfile's CMD with the compose environment (DSP engine, no Redis) and probe it with the
    image's HEALTHCHECK command, with and without the right credentials."""
    port = free_port()
    env = {**os.environ, **backend_env(compose, {"BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p"}),
           "ENGINE": "dsp", "MODEL_DIR": str(tmp_path / "model_dir"), "HF_HOME": str(tmp_path / "hf"),
           "QUEUE_URL": "", "LABEL_STUDIO_URL": "", "PORT": str(port), "THREADS": "2",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = json.loads(_args(dockerfile, "CMD")[0])
    health = json.loads(_args(dockerfile, "HEALTHCHECK")[0].split("CMD ", 1)[1])
    assert health[0] == "python"
    health[0] = sys.executable
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run(health, cwd=ROOT, env=env, capture_output=True, text=True)
            if probe.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.5)
        assert probe.returncode == 0, (probe.stderr, server.poll())
        # the backend's Flask app (ml_backend.server.app.create_app) with the settings compose passed
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health",
                                         headers={"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "UP" and body["engine"] == "dsp"
        wrong = subprocess.run(health, cwd=ROOT, env={**env, "BASIC_AUTH_PASS": "wrong"}, capture_output=True,
                               text=True)
        assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    down = subprocess.run(health, cwd=ROOT, env=env, capture_output=True, text=True)
    assert down.returncode == 1 and f"127.0.0.1:{port}/health" in down.stderr


# ---- the real `docker compose`, where it is installed ----------------------------------------------------------


def _docker_compose() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"v?2\.\d+", probe.stdout):
            return cmd
    return None


@pytest.mark.parametrize("files, profiles", [(["docker-compose.yml"], []),
                                             (["docker-compose.yml", "deploy/compose.vllm.yml"], ["vllm"])])
def test_docker_compose_config_accepts_the_files(tmp_path, files, profiles):
    """`docker compose config` validates against the compose spec client-side (no engine needed)."""
    cmd = _docker_compose()
    if cmd is None:
        pytest.skip("docker compose v2 is not installed here")
    args = [*cmd, "--project-directory", str(ROOT), "--env-file", str(ENV_EXAMPLE)]
    for f in files:
        args += ["-f", str(ROOT / f)]
    for p in profiles:
        args += ["--profile", p]
    env = {**os.environ, **SECRETS}
    out = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    engine = config["services"]["ml-backend"]["environment"]["ENGINE"]
    assert engine == ("openai" if profiles else "transformers")
