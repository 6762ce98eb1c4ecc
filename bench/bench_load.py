"""Load check of the backend under gunicorn (ENGINE=dsp, WORKERS=2, THREADS=8), as Label Studio and a busy team
drive it:

  1. baseline: one uncached song, alone (the latency the other figures are compared with, same run);
  2. 20 concurrent /predict requests, each for a different uncached song (downloaded from a loopback HTTP server
     standing in for a media host, then decoded and analysed);
  3. 50 concurrent /predict requests for one uncached song: it must be computed once (the others wait for it,
     across both workers) and every answer must be the same.

Each scenario starts a fresh gunicorn with an empty MODEL_DIR. Prints p50/p95/max latency (seconds, and as a
ratio of the baseline), errors, how many times the song of scenario 3 was computed, and the peak RSS (VmHWM) of
the gunicorn master and of its largest worker. Songs are rendered from MIDI (tests/music.py, fluidsynth): four
songs of about a minute, each in five gain variants (different bytes, so no cache sharing).

    python bench/bench_load.py [--seconds 60] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_songs(folder: Path, seconds: float, count: int = 21) -> list[Path]:
    """``count`` distinct FLAC files: four rendered songs of about ``seconds`` each, in gain variants."""
    import numpy as np
    import soundfile as sf

    from tests.music import render_songs, song

    plans = [(100, "E minor", 4), (128, "Bb major", 4), (84, "D major", 3), (150, "F# minor", 4)]
    specs = []
    for i, (tempo, key, meter) in enumerate(plans):
        bar = meter * 60.0 / tempo
        parts = max(3, round(seconds / (8 * bar)))
        specs.append(song(tempo, key, ("DABABCAB" * 4)[:parts], bars=8, meter=meter, seed=200 + i))
    renders = render_songs(folder / "renders", specs)
    songs = []
    for n in range(count):
        data, sr = sf.read(str(renders[n % len(renders)]), dtype="float32")
        target = folder / f"song{n:02d}.flac"
        sf.write(str(target), data * np.float32(0.95 ** (n // len(renders))), sr, subtype="PCM_16")
        songs.append(target)
    return songs


class MediaHost:
    """A loopback HTTP server for the song files (the backend downloads them: nothing is local to it)."""

    def __init__(self, folder: Path):
        handler = lambda *a, **kw: _Quiet(*a, directory=str(folder), **kw)  # noqa: E731
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Backend:
    """gunicorn -c python:ml_backend._wsgi on a free loopback port, with an empty MODEL_DIR."""

    def __init__(self, folder: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "gunicorn.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE", "MODEL_", "QUEUE_"))}
        env.update(ENGINE="dsp", MODEL_DIR=str(folder / "model_dir"), WORKERS="2", THREADS="8", QUEUE_WORKERS="0",
                   ALLOWED_MEDIA_HOSTS="127.0.0.1", LOG_LEVEL="INFO", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:ml_backend._wsgi",
                                          "--bind", f"127.0.0.1:{self.port}"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        for _ in range(1200):
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise SystemExit(f"gunicorn did not start:\n{self.log.read_text()[-3000:]}")
        for _ in range(1800):  # each worker warms up (imports, JIT) in the background after the fork
            if self.log.read_text().count("ready in") >= 2:
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"the workers did not warm up:\n{self.log.read_text()[-3000:]}")

    def peak_rss_mb(self) -> tuple[float, float]:
        """(master, largest worker) VmHWM in MB."""
        def hwm(pid: int) -> float:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
            return 0.0

        kids = [int(x) for x in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        return hwm(self.proc.pid), max((hwm(k) for k in kids), default=0.0)

    def computed(self, task_ids: range) -> int:
        """How many of ``task_ids`` were really computed (not cache hits, not waiters)."""
        ids = {str(t) for t in task_ids}
        return sum(1 for tid in re.findall(r"task (\d+): \d+ regions from", self.log.read_text()) if tid in ids)

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def predict(url: str, task_id: int, ref: str) -> tuple[float, bool, str]:
    """(seconds, ok, result digest) of one /predict for one task."""
    from label_config import shipped_config

    body = {"tasks": [{"id": task_id, "data": {"audio": ref}}], "label_config": shipped_config(), "project": "1.1"}
    started = time.perf_counter()
    try:
        response = requests.post(url + "/predict", json=body, timeout=600)
        result = response.json()["results"][0] if response.status_code == 200 else {}
    except (requests.RequestException, ValueError, KeyError, IndexError):
        result = {}
    seconds = time.perf_counter() - started
    ok = bool(result.get("result")) and not str(result.get("model_version", "")).endswith("-failed")
    return seconds, ok, json.dumps(result.get("result"), sort_keys=True)


def concurrent(url: str, refs: list[tuple[int, str]]) -> list[tuple[float, bool, str]]:
    with ThreadPoolExecutor(max_workers=len(refs)) as pool:
        return list(pool.map(lambda r: predict(url, *r), refs))


def summary(name: str, runs: list[tuple[float, bool, str]], baseline: float, wall: float, rss, extra: dict) -> dict:
    latencies = sorted(s for s, _, _ in runs)
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    return {"scenario": name, "requests": len(runs), "errors": sum(1 for _, ok, _ in runs if not ok),
            "p50_s": round(statistics.median(latencies), 2), "p95_s": round(p95, 2), "max_s": round(latencies[-1], 2),
            "p50_x_baseline": round(statistics.median(latencies) / baseline, 2),
            "p95_x_baseline": round(p95 / baseline, 2), "wall_s": round(wall, 2),
            "master_peak_rss_mb": round(rss[0]), "worker_peak_rss_mb": round(rss[1]), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each song (default 60)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp = Path(tmp)
        songs = make_songs(tmp / "songs", args.seconds)
        host = MediaHost(tmp / "songs")
        results = []
        try:
            backend = Backend(tmp / "a")
            try:
                [baseline_run] = concurrent(backend.url, [(1, f"{host.url}/{songs[20].name}")])
                baseline = baseline_run[0]
                rss = backend.peak_rss_mb()
                results.append(summary("baseline: 1 uncached song alone", [baseline_run], baseline, baseline, rss,
                                       {}))
                started = time.perf_counter()
                runs = concurrent(backend.url, [(100 + i, f"{host.url}/{songs[i].name}") for i in range(20)])
                wall = time.perf_counter() - started
                results.append(summary("20 concurrent uncached songs", runs, baseline, wall, backend.peak_rss_mb(),
                                       {"computed": backend.computed(range(100, 120))}))
            finally:
                backend.stop()
            backend = Backend(tmp / "b")
            try:
                started = time.perf_counter()
                runs = concurrent(backend.url, [(300 + i, f"{host.url}/{songs[0].name}") for i in range(50)])
                wall = time.perf_counter() - started
                results.append(summary("50 concurrent requests, one uncached song", runs, baseline, wall,
                                       backend.peak_rss_mb(), {"computed": backend.computed(range(300, 350)),
                                                               "distinct_answers": len({r[2] for r in runs})}))
            finally:
                backend.stop()
        finally:
            host.close()

    print(f"{'scenario':44} {'req':>4} {'err':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'p50/base':>9} "
          f"{'p95/base':>9} {'wall s':>7} {'master MB':>10} {'worker MB':>10} computed")
    for r in results:
        print(f"{r['scenario']:44} {r['requests']:>4} {r['errors']:>4} {r['p50_s']:>7} {r['p95_s']:>7} "
              f"{r['max_s']:>7} {r['p50_x_baseline']:>9} {r['p95_x_baseline']:>9} {r['wall_s']:>7} "
              f"{r['master_peak_rss_mb']:>10} {r['worker_peak_rss_mb']:>10} {r.get('computed', '')}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
