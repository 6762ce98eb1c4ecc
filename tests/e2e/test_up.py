"""``ls-acestep up`` as a user runs it: a subprocess with ENGINE=dsp and a temp data dir. It prints the URL and
the login, the project and the backend connection exist in Label Studio, Ctrl-C (SIGINT) stops every process it
started, and a second run reuses the data dir (same login, same project, nothing duplicated).

To save the 25-60 s of database migrations, the data dir starts with a copy of the session Label Studio's database
as it was right after start-up (migrated, one user, no projects); ``up`` itself never sees the difference from an
empty dir (it creates its own login, project and connection)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from .servers import LS_VENV, REPO, free_port

pytestmark = pytest.mark.labelstudio


def processes_using(path: Path) -> list[int]:
    """Pids of processes whose command line mentions ``path``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


class Up:
    """A running ``ls-acestep up`` and the lines it printed."""

    def __init__(self, data_dir: Path, port: int, backend_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "QUEUE_", "MODEL_"))}
        env.update(ENGINE="dsp", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ls_acestep.cli", "up", "--data-dir", str(data_dir), "--port", str(port),
             "--backend-port", str(backend_port), "--ls-venv", str(LS_VENV)],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("Press Ctrl-C"):
                self.ready.set()
        self.ready.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float) -> dict:
        assert self.ready.wait(timeout), f"ls-acestep up printed no URL within {timeout:.0f} s:\n{self.text}"
        assert self.proc.poll() is None, f"ls-acestep up exited with {self.proc.returncode}:\n{self.text}"
        found = {
            "url": re.search(r"Label Studio: (http://\S+?)/?\s+log in as (\S+) / (\S+)", self.text),
            "project": re.search(r"Project:\s+http://\S+/projects/(\d+)/\s+\((reused|created)", self.text),
            "token": re.search(r"API token:\s+(\w+)", self.text),
        }
        assert all(found.values()), self.text
        return {"url": found["url"].group(1), "user": found["url"].group(2), "password": found["url"].group(3),
                "project": int(found["project"].group(1)), "project_state": found["project"].group(2),
                "token": found["token"].group(1)}

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(90)


def test_up_starts_connects_stops_and_reuses(label_studio, tmp_path):
    data_dir = tmp_path / "up-data"
    (data_dir / "label-studio").mkdir(parents=True)
    (data_dir / "label-studio" / "label_studio.sqlite3").write_bytes(label_studio.template_db.read_bytes())
    port, backend_port = free_port(), free_port()

    first = Up(data_dir, port, backend_port)
    try:
        info = first.wait_ready(300)
        assert "ENGINE=dsp" in first.text and "from ENGINE in the environment" in first.text
        assert info["project_state"] == "created"
        api = {"Authorization": f"Token {info['token']}"}
        project = requests.get(f"{info['url']}/api/projects/{info['project']}", headers=api, timeout=10).json()
        assert project["title"] == "Songs (ls-acestep)" and '<Audio name="audio"' in project["label_config"]
        backends = requests.get(f"{info['url']}/api/ml?project={info['project']}", headers=api, timeout=10).json()
        assert [b["url"] for b in backends] == [f"http://127.0.0.1:{backend_port}"]
        hooks = requests.get(f"{info['url']}/api/webhooks/?project={info['project']}", headers=api, timeout=10).json()
        assert [h["url"] for h in hooks] == [f"http://127.0.0.1:{backend_port}/webhook"]  # imports reach the backend
        assert requests.get(f"http://127.0.0.1:{backend_port}/health", timeout=10).json()["engine"] == "dsp"
        # the printed login works on the login form
        session = requests.Session()
        session.get(f"{info['url']}/user/login/", timeout=10)
        login = session.post(f"{info['url']}/user/login/", timeout=10, headers={"Referer": f"{info['url']}/"},
                             data={"email": info["user"], "password": info["password"],
                                   "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")})
        assert login.ok and "/user/login" not in login.url
        # ... which Label Studio got through its environment: no command line shows the password or the token
        cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in processes_using(data_dir)}
        assert any(b"label-studio" in c and b" start" in c.replace(b"\0", b" ") for c in cmdlines.values()), cmdlines
        for pid, cmdline in cmdlines.items():
            assert info["password"].encode() not in cmdline and info["token"].encode() not in cmdline, pid
        assert first.interrupt() == 0, first.text
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    time.sleep(1.0)
    assert processes_using(data_dir) == [], "Ctrl-C left processes running"
    for p in (port, backend_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{p}/", timeout=5)

    second = Up(data_dir, port, backend_port)
    try:
        again = second.wait_ready(300)
        assert again["project"] == info["project"] and again["project_state"] == "reused"
        assert (again["user"], again["password"], again["token"]) == (info["user"], info["password"], info["token"])
        api = {"Authorization": f"Token {again['token']}"}
        titles = [p["title"] for p in requests.get(f"{again['url']}/api/projects", headers=api, timeout=10)
                  .json()["results"]]
        assert titles.count("Songs (ls-acestep)") == 1
        backends = requests.get(f"{again['url']}/api/ml?project={again['project']}", headers=api, timeout=10).json()
        assert len(backends) == 1
        hooks = requests.get(f"{again['url']}/api/webhooks/?project={again['project']}", headers=api, timeout=10)
        assert len(hooks.json()) == 1
        assert second.interrupt() == 0, second.text
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
    time.sleep(1.0)
    assert processes_using(data_dir) == []
