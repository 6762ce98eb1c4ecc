"""`ls-acestep serve` as a real process on a free port (ENGINE=dsp, model loaded lazily), answering Label Studio's
calls over HTTP; and a bad setting stopping it with a message naming the variable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import requests

from label_config import shipped_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_health_and_setup(tmp_path):
    port = free_port()
    env = {**os.environ, "ENGINE": "dsp", "MODEL_DIR": str(tmp_path / "model_dir"), "QUEUE_WORKERS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ls_acestep", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-warm-up"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health = None
        for _ in range(300):  # the server is up within seconds; poll every 0.1 s
            if proc.poll() is not None:
                break
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert health is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        assert health["status"] == "UP" and health["engine"] == "dsp"
        setup = requests.post(f"http://127.0.0.1:{port}/setup", timeout=5,
                              json={"project": "1.1", "schema": shipped_config(), "hostname": "", "access_token": ""})
        assert setup.json() == {"model_version": health["model_version"]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_a_bad_setting(tmp_path):
    env = {**os.environ, "ENGINE": "tensorflow", "MODEL_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ls_acestep", "serve", "--no-warm-up"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ENGINE='tensorflow'" in done.stderr and "Traceback" not in done.stderr
