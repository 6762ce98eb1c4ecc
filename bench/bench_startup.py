"""Start-up time and peak memory of the DSP-only backend server for one song of about 5 minutes.

Starts the real server (``gunicorn -c python:ml_backend._wsgi``, ENGINE=dsp, one worker) and measures:

- ``ready_s``: process start to the first ``GET /health`` answered 200 (Label Studio can connect);
- ``warm_s``: process start to ``/health`` saying the model is loaded (the analysis JIT compiled);
- ``predict_s``: one ``POST /predict`` of the song (a Local Files task, nothing cached);
- ``peak_rss_mb``: the highest resident memory (VmHWM) of the worker process and of the master after it.

Repeats ``--rounds`` times (a fresh server each time) and prints medians.

    python bench/bench_startup.py                       # wesnoth battle.ogg (5:18), else a rendered song
    python bench/bench_startup.py --song some.mp3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ls_acestep.files import atomic_write  # noqa: E402 (the repository is on sys.path now)

WESNOTH_SONG = Path("/usr/share/games/wesnoth/1.16/data/core/music/battle.ogg")  # 318 s of orchestral music
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_song(folder: Path) -> Path:
    """battle.ogg when wesnoth-1.16-music is installed, else a 5-minute song rendered from MIDI."""
    if WESNOTH_SONG.is_file():
        return WESNOTH_SONG
    from tests.music import render_songs, song

    return render_songs(folder, [song(120, "A minor", "ABABCBAB" * 2, bars=9)])[0]


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a live process in MB (VmHWM from /proc), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def get_json(url: str, body: dict | None = None, timeout: float = 600.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def one_round(song: Path, work: Path) -> dict:
    """Start a fresh server, time it to ready and warm, predict the song once, read peak memory, stop it."""
    from label_config import shipped_config

    docs = work / "documents"
    (docs / "songs").mkdir(parents=True, exist_ok=True)
    target = docs / "songs" / song.name
    if not target.exists():
        shutil.copy(song, target)
    model_dir = Path(tempfile.mkdtemp(dir=work, prefix="model_dir-"))
    port = free_port()
    env = {**os.environ, "ENGINE": "dsp", "PORT": str(port), "WORKERS": "1", "THREADS": "2", "QUEUE_WORKERS": "0",
           "MODEL_DIR": str(model_dir), "LOCAL_FILES_DOCUMENT_ROOT": str(docs), "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:ml_backend._wsgi"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    ready_s = warm_s = None
    try:
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read()[-2000:]}")
            try:
                status, health = get_json(f"{base}/health", timeout=2)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200 and ready_s is None:
                ready_s = time.perf_counter() - started
            if status == 200 and health.get("model_loaded", health.get("loaded", True)):
                warm_s = time.perf_counter() - started
                break
            time.sleep(0.05)
        if ready_s is None:
            raise SystemExit("the server did not answer /health in time")
        task = {"id": 1, "data": {"audio": f"/data/local-files/?d=songs/{song.name}"}}
        t = time.perf_counter()
        status, body = get_json(f"{base}/predict", {"tasks": [task], "label_config": shipped_config()})
        predict_s = time.perf_counter() - t
        if status != 200 or not body.get("results", [{}])[0].get("result"):
            raise SystemExit(f"/predict failed: HTTP {status} {str(body)[:300]}")
        workers = children(server.pid)
        worker_mb = max((vm_hwm_mb(p) for p in workers), default=0.0)
        master_mb = vm_hwm_mb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {"ready_s": ready_s, "warm_s": warm_s, "predict_s": predict_s, "worker_peak_rss_mb": worker_mb,
            "master_peak_rss_mb": master_mb}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--song", type=Path, help="audio file (default: wesnoth battle.ogg, about 5 minutes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        song = args.song or default_song(work / "song")
        from ml_backend.analysis.audio import load_audio

        seconds = len(load_audio(song)) / 16000
        rounds = []
        for r in range(args.rounds):
            rounds.append(one_round(song, work))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in rounds[-1].items() if v is not None),
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {"song": song.name, "song_seconds": round(seconds, 1), "rounds": args.rounds,
              "load_average": [round(x, 1) for x in os.getloadavg()]}
    for key in rounds[0]:
        values = [x[key] for x in rounds if x[key] is not None]
        report[key] = round(statistics.median(values), 2) if values else None
    print(json.dumps(report, indent=2))
    if args.json:
        atomic_write(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return report


if __name__ == "__main__":
    main()
