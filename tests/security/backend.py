"""Real processes for the backend's security tests: a redis-server that a test can stop and start again, and the
backend under gunicorn (as in production) with its log in a file. Everything listens on loopback only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e import servers
from tests.e2e.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def wait_until(check, seconds: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """tests.e2e.servers.wait_until, polled every 0.1 s (these servers start in a second or two)."""
    return servers.wait_until(check, seconds, what, interval=0.1, proc=proc, log=log)


class RedisServer:
    """A redis-server on a fixed loopback port, without persistence; ``stop()`` and ``start()`` again."""

    def __init__(self, folder: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        import redis

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        wait_until(client.ping, 10, "redis-server", proc=self.proc)
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Gunicorn:
    """The backend under gunicorn: ``python -m gunicorn -c python:ml_backend._wsgi`` on a free loopback port."""

    env: dict
    log: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Gunicorn":
        self.port = self.port or free_port()
        cmd = [sys.executable, "-m", "gunicorn", "-c", "python:ml_backend._wsgi", "--bind", f"127.0.0.1:{self.port}"]
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
        out.close()
        wait_until(lambda: requests.get(self.url + "/health", timeout=5).status_code == 200, 120,
                   f"gunicorn on {self.url}", proc=self.proc, log=self.log)
        # each worker warms up (imports, JIT) in the background after the fork; wait for all of them, so that no
        # test pays for it
        workers = int(self.env.get("WORKERS", "1"))
        wait_until(lambda: self.text_log().count("ready in") >= workers, 180, "the workers' warm-up",
                   proc=self.proc, log=self.log)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def text_log(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The gunicorn master and its workers (children of the master)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            kids = [int(x) for x in children.read_text().split()]
        except OSError:
            kids = []
        return [self.proc.pid, *kids]

    def peak_rss_mb(self) -> float:
        """The highest peak RSS (VmHWM) among the master and its workers, in MB."""
        peak = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                continue
        return peak / 1024


def backend_env(model_dir: Path, **overrides) -> dict:
    """ENGINE=dsp, no Label Studio, loopback media allowed only where a test says so."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENGINE", "MODEL_", "QUEUE_", "LABEL_STUDIO", "ALLOWED_MEDIA", "MEDIA_", "MAX_"))}
    env.update(ENGINE="dsp", MODEL_DIR=str(model_dir), WORKERS="2", THREADS="8", LOG_LEVEL="INFO",
               QUEUE_WORKERS="0", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.update({k: str(v) for k, v in overrides.items()})
    return env
