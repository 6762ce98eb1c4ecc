"""``ls-acestep up``: the whole thing on one machine without Docker. Starts Label Studio (installed into its own
virtual environment when missing), the backend under gunicorn with its pre-labeling worker, creates a project with
the shipped label config (reused on later runs), connects the backend, and prints the URL and the login. Ctrl-C
stops everything it started. Everything lives in one data folder, so a second run continues where the first
stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

PROJECT_TITLE = "Songs (ls-acestep)"
USERNAME = "admin@localhost"
STATE_FILE = "up.json"
LS_REQUIREMENT = "label-studio==1.23.*"
# Where earlier versions kept everything: in the folder `up` was started from. Still used when it holds a login.
OLD_DATA_DIR = Path("ls-acestep-data")
LS_START_TIMEOUT = 600.0  # seconds; the first start creates the database (about a minute, more on a busy machine)
BACKEND_START_TIMEOUT = 1800.0  # the backend answers once its model is loaded (a 7B download takes a while)


class UpError(click.ClickException):
    """Something ``up`` cannot do; the message says what to do instead."""


@dataclass
class UpState:
    """What a later run reuses: the login, the API token and the project id (in DATA_DIR/up.json, mode 600)."""

    username: str
    password: str
    token: str
    project_id: int | None = None


def load_state(path: Path) -> UpState:
    """The saved state, or fresh credentials on a first run."""
    if path.is_file():
        try:
            return UpState(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise UpError(f"{path} is damaged ({exc}); delete it to start with a new login (the Label Studio "
                          "data stays)") from None
    # letters and digits only: easy to copy from the terminal into the login form
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
    return UpState(username=USERNAME, password=password, token=secrets.token_hex(20))


def save_state(path: Path, state: UpState) -> None:
    """Write the state atomically, readable by the owner only (it holds the password and the token)."""
    from ls_acestep.files import atomic_write

    atomic_write(path, json.dumps(asdict(state), indent=2).encode(), mode=0o600)


def default_data_dir() -> Path:
    """The data folder of ``up`` (and of ``preannotate``'s prediction cache) when none is given: the user's own
    (``~/.local/share/ls-acestep`` on Linux, via platformdirs), so that both commands share one Label Studio and
    one cache from whatever folder they are started. A ./ls-acestep-data with a login in it, left by earlier
    versions, is used instead so that nothing set up there is lost."""
    if (OLD_DATA_DIR / STATE_FILE).is_file():
        return OLD_DATA_DIR
    import platformdirs

    return Path(platformdirs.user_data_dir("ls-acestep", appauthor=False))


def choose_engine(requested: str) -> tuple[str, str]:
    """(engine, why): ``requested`` unless it is "auto"; then ENGINE from the environment when set, else
    transformers when torch sees a GPU and dsp otherwise."""
    if requested != "auto":
        return requested, "chosen with --engine"
    if os.environ.get("ENGINE", "").strip():
        return os.environ["ENGINE"].strip().lower(), "from ENGINE in the environment"
    try:
        import torch

        gpu = torch.cuda.is_available()
    except Exception:  # no torch, or a broken CUDA install: the DSP engine still works
        gpu = False
    if gpu:
        return "transformers", "a GPU is present"
    return "dsp", "no GPU found: tempo, key and sections only, no language model (--engine to change)"


def find_label_studio(venv: Path) -> Path | None:
    """The label-studio executable: in ``venv``, else on PATH; None when neither has it."""
    exe = venv / "bin" / "label-studio"
    if exe.exists():
        return exe
    found = shutil.which("label-studio")
    return Path(found) if found else None


def install_label_studio(venv: Path, say) -> Path:
    """Install Label Studio 1.23 into its own virtual environment (its pinned dependencies clash with ours)."""
    say(f"installing Label Studio ({LS_REQUIREMENT}) into {venv} (a few minutes, once) ...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", LS_REQUIREMENT], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UpError(f"installing Label Studio into {venv} failed ({exc}); install it yourself with "
                      f"'pip install \"{LS_REQUIREMENT}\"' in a separate environment and pass --ls-venv") from None
    return venv / "bin" / "label-studio"


def label_studio_env(document_root: Path) -> dict:
    """Label Studio's environment: our backend on loopback allowed, no phoning home, local files served."""
    env = dict(os.environ)
    env.update(ML_BLOCK_LOCAL_IP="false", USE_DEFAULT_BANNED_SUBNETS="false", LATEST_VERSION_CHECK="false",
               COLLECT_ANALYTICS="false", LOCAL_FILES_SERVING_ENABLED="true",
               LOCAL_FILES_DOCUMENT_ROOT=str(document_root))
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


TAIL_BYTES = 64 << 10  # of a log read for its last lines: the logs are appended to run after run (gigabytes)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, from its last TAIL_BYTES at most."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Child:
    """A server started by ``up``: its process (in its own process group) and its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout`` seconds."""
        if not self.alive():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when ``up`` dies, even by SIGKILL, so nothing is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_child(name: str, cmd: list[str], env: dict, log: Path, cwd: Path) -> Child:
    """Start a server in its own process group (Ctrl-C reaches ``up``, which stops the group), logging to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    return Child(name, proc, log)


def wait_for(check, child: Child, timeout: float, what: str) -> None:
    """Poll ``check()`` until true; UpError with the log's tail when the child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise UpError(f"{child.name} exited (status {child.proc.returncode}) while {what}; its log "
                          f"{child.log} ends with:\n{tail(child.log)}")
        try:
            if check():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(1.0)
    raise UpError(f"timed out after {timeout:.0f} s while {what}; see {child.log}")


def set_up_project(state: UpState, ls_url: str, backend_url: str) -> bool:
    """Run ``ls-acestep connect``'s steps against the Label Studio ``up`` started: the project of an earlier run
    (state.project_id) if it still exists, else the one titled PROJECT_TITLE, else a new one with the shipped
    config; the backend connected; its pre-labeling webhook (with the backend's basic-auth header when
    BASIC_AUTH_USER/BASIC_AUTH_PASS are set, as the backend then requires). Sets state.project_id; returns whether
    the project was reused."""
    from ls_acestep.media import MediaError, make_client

    from ml_backend.studio.connect import ConnectError, Plan, ensure_backend, ensure_project, ensure_webhook
    from ml_backend.settings import Settings, SettingsError

    try:
        backend = Settings.from_env()  # the environment the backend was started with (bar ENGINE and paths)
        plan = Plan(label_studio_url=ls_url, api_key=state.token, backend_url=backend_url,
                    project_title=PROJECT_TITLE, basic_auth_user=backend.basic_auth_user,
                    basic_auth_pass=backend.basic_auth_pass)
        client = make_client(ls_url, state.token)
        state.project_id, created = ensure_project(client, plan, known_id=state.project_id)
        _, _, old_url = ensure_backend(client, state.project_id, plan)
        ensure_webhook(client, state.project_id, plan, old_url)
    except (ConnectError, MediaError, SettingsError) as exc:
        raise UpError(f"setting up the project in Label Studio failed: {exc}") from None
    return not created


@dataclass
class Layout:
    """Where ``up`` keeps things inside its data folder."""

    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(exist_ok=True)

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def label_studio(self) -> Path:
        return self.root / "label-studio"  # Label Studio's --data-dir

    @property
    def model_dir(self) -> Path:
        return self.root / "model_dir"  # the backend's MODEL_DIR (prediction cache, queue, downloads)

    @property
    def files(self) -> Path:
        return self.root / "files"  # LOCAL_FILES_DOCUMENT_ROOT: songs here can be imported as local files

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def label_studio_command(exe: Path, layout: Layout, host: str, port: int) -> list[str]:
    """Label Studio's command line. It holds no secret: every user of the machine can read it (ps, /proc)."""
    return [str(exe), "start", "--no-browser", "--internal-host", host, "--port", str(port),
            "--data-dir", str(layout.label_studio), "--enable-legacy-api-token"]


def login_env(state: UpState) -> dict:
    """The login for Label Studio's first start, in the variables it reads when its command line has none
    (label_studio/server.py: USERNAME, PASSWORD, USER_TOKEN, each with the LABEL_STUDIO_ prefix). A process's
    environment is readable only by its owner."""
    return {"LABEL_STUDIO_USERNAME": state.username, "LABEL_STUDIO_PASSWORD": state.password,
            "LABEL_STUDIO_USER_TOKEN": state.token}


def start_label_studio(exe: Path, layout: Layout, state: UpState, host: str, port: int) -> Child:
    """Start Label Studio with the saved login and a legacy API token, and wait until its API answers."""
    import requests

    child = start_child("Label Studio", label_studio_command(exe, layout, host, port),
                        {**label_studio_env(layout.files), **login_env(state)}, layout.logs / "label-studio.log",
                        layout.root)
    url, headers = f"http://127.0.0.1:{port}/api/projects", {"Authorization": f"Token {state.token}"}
    wait_for(lambda: requests.get(url, headers=headers, timeout=5).status_code == 200, child, LS_START_TIMEOUT,
             "starting Label Studio")
    return child


def choose_lyrics(environ=None) -> tuple[str, str]:
    """(LYRICS_ENGINE, why): the environment's LYRICS_ENGINE when set; else openai when LYRICS_BASE_URL names a
    transcription server; else whisper when torch sees a GPU (about 2 GB beside the description model) and none
    on the CPU, where Whisper large-v3-turbo would take minutes per song (docs/lyrics.md)."""
    environ = os.environ if environ is None else environ
    if environ.get("LYRICS_ENGINE", "").strip():
        return environ["LYRICS_ENGINE"].strip().lower(), "from LYRICS_ENGINE in the environment"
    if environ.get("LYRICS_BASE_URL", "").strip():
        return "openai", "a transcription server is set in LYRICS_BASE_URL"
    try:
        import torch

        gpu = torch.cuda.is_available()
    except Exception:  # no torch, or a broken CUDA install
        gpu = False
    if gpu:
        return "whisper", "a GPU is present"
    return "none", "no GPU found: no lyrics (set LYRICS_ENGINE=whisper or LYRICS_BASE_URL to change)"


def start_backend(layout: Layout, state: UpState, engine: str, ls_url: str, port: int,
                  lyrics: str = "none") -> Child:
    """Start the backend under gunicorn (its worker threads post predictions to ``ls_url``) and wait for
    ``/health``, which answers once the model is loaded."""
    import requests

    env = dict(os.environ, ENGINE=engine, LYRICS_ENGINE=lyrics, LABEL_STUDIO_URL=ls_url,
               LABEL_STUDIO_API_KEY=state.token,
               MODEL_DIR=str(layout.model_dir), LOCAL_FILES_DOCUMENT_ROOT=str(layout.files), PORT=str(port))
    child = start_child("the backend", [sys.executable, "-m", "gunicorn", "-c", "python:ml_backend._wsgi",
                                        "--bind", f"127.0.0.1:{port}"], env, layout.logs / "backend.log", layout.root)
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200, child,
             BACKEND_START_TIMEOUT, "starting the backend (loading the model)")
    return child


def summary_lines(layout: Layout, state: UpState, ls_url: str, backend_url: str, engine: str, why: str,
                  reused: bool, lyrics: str = "none", lyrics_why: str = "") -> list[str]:
    """What ``up`` prints once everything runs: where to go, how to log in, what runs."""
    return [
        f"Label Studio: {ls_url}/  log in as {state.username} / {state.password}",
        f"Project:      {ls_url}/projects/{state.project_id}/  ({'reused' if reused else 'created'}: "
        f"\"{PROJECT_TITLE}\"; songs imported there are pre-annotated right away)",
        f"Backend:      {backend_url}/  ENGINE={engine} ({why})",
        f"Lyrics:       LYRICS_ENGINE={lyrics}" + (f" ({lyrics_why})" if lyrics_why else ""),
        f"API token:    {state.token}  (for ls-acestep preannotate / convert --ls-token)",
        f"Data:         {layout.root}  (logs in {layout.logs})",
        "Press Ctrl-C to stop.",
    ]


def watch(children: list[Child]) -> None:
    """Block until one of the children stops (an UpError naming it) or Ctrl-C (KeyboardInterrupt)."""
    while True:
        for child in children:
            if not child.alive():
                raise UpError(f"{child.name} stopped (status {child.proc.returncode}); its log {child.log} ends "
                              f"with:\n{tail(child.log)}")
        time.sleep(1.0)


def stop_all(children: list[Child]) -> None:
    """Stop the children, the last started first."""
    for child in reversed(children):
        child.stop()


@click.command("up")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Everything lives here: Label Studio's data, the backend's MODEL_DIR, logs, the login. A second "
                   "run reuses it. [default: ~/.local/share/ls-acestep, or ./ls-acestep-data when it holds a "
                   "login from an earlier version]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface Label Studio listens on (0.0.0.0 to reach it from other machines).")
@click.option("--port", type=int, default=8080, show_default=True, help="Label Studio's port.")
@click.option("--backend-port", type=int, default=9090, show_default=True, help="The backend's port (loopback).")
@click.option("--engine", type=click.Choice(["auto", "transformers", "openai", "dsp"]), default="auto",
              show_default=True, help="auto: $ENGINE when set, else transformers with a GPU and dsp without.")
@click.option("--ls-venv", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Label Studio's own virtual environment [default: DATA_DIR/ls-venv, or label-studio on PATH]; "
                   "installed there when missing.")
def up_command(data_dir: Path | None, host: str, port: int, backend_port: int, engine: str,
               ls_venv: Path | None) -> None:
    """Start Label Studio and the pre-annotation backend on this machine, with a project ready for songs.

    Other backend settings (MODEL_ID, SEGMENTATION, ...) come from the environment as for `ls-acestep serve`.
    Stop with Ctrl-C; run again with the same --data-dir to continue.
    """
    say = lambda text: click.echo(text, err=True)  # noqa: E731  progress on stderr, the summary on stdout
    layout = Layout((data_dir or default_data_dir()).resolve())
    state = load_state(layout.state)
    first_run = not layout.state.exists()
    save_state(layout.state, state)
    engine, why = choose_engine(engine)
    lyrics, lyrics_why = choose_lyrics()
    venv = (ls_venv or layout.root / "ls-venv").resolve()
    exe = find_label_studio(venv) or install_label_studio(venv, say)
    ls_url, backend_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{backend_port}"

    children: list[Child] = []

    def on_sigterm(_signum, _frame):
        raise KeyboardInterrupt  # stop as on Ctrl-C

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        how = "first start: creating the database, about a minute" if first_run else f"reusing {layout.root}"
        say(f"starting Label Studio on {ls_url} ({how}) ...")
        children.append(start_label_studio(exe, layout, state, host, port))
        say(f"starting the backend on {backend_url} with ENGINE={engine} ({why}), LYRICS_ENGINE={lyrics} "
            f"({lyrics_why}) ...")
        children.append(start_backend(layout, state, engine, ls_url, backend_port, lyrics))

        reused = set_up_project(state, ls_url, backend_url)
        save_state(layout.state, state)
        for line in summary_lines(layout, state, ls_url, backend_url, engine, why, reused, lyrics, lyrics_why):
            click.echo(line)
        sys.stdout.flush()
        watch(children)
    except KeyboardInterrupt:
        say("stopping ...")
        stop_all(children)
        say("stopped; run the same command again to continue")
    except BaseException:
        stop_all(children)
        raise
