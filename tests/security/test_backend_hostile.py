"""The backend as an attacker meets it: the real server process (gunicorn, 2 workers, ENGINE=dsp) fed hostile task
data, with a hostile media server on loopback (trickle, endless stream, redirect into loopback, header logger).
Each input checks the outcome: the task fails with a message naming it (in the log), nothing else is lost, and
the server goes on serving.

Loopback is the only address contacted. The hostile server is allowed by name (``ALLOWED_MEDIA_HOSTS=localhost``)
so that the same server reached as ``127.0.0.1`` stands for an internal address that must be refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading

import pytest
import requests

from tests.security.backend import Gunicorn, backend_env
from tests.security.hostile import HostileServer, wait_for
from tests.test_app import ls_task, predict_body

FETCH_TIMEOUT = 20  # seconds: long enough that the five normal songs finish while the trickle is still going
NORMAL = (".wav", ".flac", ".ogg", ".mp3", ".m4a")  # five distinct songs (distinct bytes: no cache sharing)


@pytest.fixture(scope="module")
def hostile():
    server = HostileServer(trickle_seconds=1.0)
    yield server
    server.close()


@pytest.fixture(scope="module")
def documents(tmp_path_factory, song_files):
    root = tmp_path_factory.mktemp("documents")
    (root / "songs").mkdir()
    for suffix in NORMAL + (".opus",):
        shutil.copy(song_files[suffix], root / "songs" / f"song{suffix}")
    secret = tmp_path_factory.mktemp("outside") / "secret.wav"
    shutil.copy(song_files[".wav"], secret)
    (root / "songs" / "link.wav").symlink_to(secret)
    # 12 hours of silence in 8 MB of FLAC
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-t", "43200", "-c:a", "flac", str(root / "songs" / "bomb.flac")], check=True)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, documents, hostile):
    folder = tmp_path_factory.mktemp("backend")
    media = folder / "model_dir" / "media"
    media.mkdir(parents=True)
    (media / ".part-left-by-a-crash").write_bytes(b"x" * 1000)
    env = backend_env(folder / "model_dir", LOCAL_FILES_DOCUMENT_ROOT=documents, FETCH_TIMEOUT=FETCH_TIMEOUT,
                      MAX_DOWNLOAD_MB=2, MAX_REQUEST_MB=1, ALLOWED_MEDIA_HOSTS="localhost",
                      LABEL_STUDIO_URL="http://127.0.0.1:9", LABEL_STUDIO_API_KEY="secret-token")
    backend = Gunicorn(env=env, log=folder / "gunicorn.log").start()
    backend.media = media
    yield backend
    backend.stop()


def local(name: str) -> str:
    return f"/data/local-files/?d=songs/{name}"


def predict(server, tasks: list[dict], timeout: float = 300) -> list[dict]:
    response = requests.post(f"{server.url}/predict", json=predict_body(tasks), timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def failed(prediction: dict) -> bool:
    return prediction["result"] == [] and prediction["model_version"].endswith("-failed")


def log_line(server, task_id: int) -> str:
    """The backend's log line saying why ``task_id`` got no prediction (waits for it: another process writes)."""
    pattern = re.compile(rf"task {task_id}: no prediction: (.*)")
    found = wait_for(lambda: pattern.search(server.text_log()), 10)
    assert found, f"no failure logged for task {task_id}"
    return found.group(1)


def test_stale_partial_downloads_are_removed_at_start_up(server):
    assert not list(server.media.glob(".part-*"))


def test_local_files_only_inside_the_document_root(server):
    tasks = {101: "/etc/passwd", 102: "file:///etc/passwd", 103: local("../../../../etc/passwd"),
             104: local("link.wav"), 105: "songs/song.wav"}
    results = predict(server, [ls_task(tid, ref) for tid, ref in tasks.items()] + [ls_task(106, local("song.wav"))])
    assert all(failed(r) for r in results[:5]) and not failed(results[5])
    for tid in (101, 102, 105):
        assert "/data/local-files/?d=" in log_line(server, tid) and "LOCAL_FILES_DOCUMENT_ROOT" in log_line(server, tid)
    for tid in (103, 104):
        assert "leaves" in log_line(server, tid) or "download" in log_line(server, tid)


def test_internal_addresses_and_redirects_into_them_are_refused(server, hostile):
    hostile.serve("song.wav", b"RIFF-audio-that-must-not-be-fetched")
    port = hostile.port
    refs = {201: f"http://127.0.0.1:{port}/file/song.wav",
            202: f"http://localhost:{port}/redirect?to=http://127.0.0.1:{port}/file/song.wav",
            203: "http://169.254.169.254/latest/meta-data/iam/",
            204: f"http://[::1]:{port}/file/song.wav"}
    before = len(hostile.requests)
    results = predict(server, [ls_task(tid, ref) for tid, ref in refs.items()])
    assert all(failed(r) for r in results)
    for tid in refs:
        assert "internal address" in log_line(server, tid), tid
    # the only request that reached the hostile server is the allowed first hop of the redirect
    assert [p.split("?")[0] for p, _ in hostile.requests[before:]] == ["/redirect"]
    # and the Label Studio token never leaves for a foreign host
    assert all("Authorization" not in headers for _, headers in hostile.requests)


def test_endless_stream_stops_at_the_cap(server, hostile):
    [result] = predict(server, [ls_task(301, f"http://localhost:{hostile.port}/endless")])
    assert failed(result)
    assert "MAX_DOWNLOAD_MB=2" in log_line(server, 301)
    assert hostile.left["/endless"].wait(10)
    assert hostile.sent["/endless"] < 64 << 20  # 2 MB cap plus what socket buffers held
    assert not list(server.media.glob(".part-*"))


def test_a_trickling_host_does_not_hold_up_other_songs(server, hostile):
    """One request waits on a host that sends a byte a second; five other songs, requested meanwhile, are
    predicted while it waits; the trickling task then fails at FETCH_TIMEOUT and the connection is closed."""
    done: dict[str, list] = {}

    def trickle():
        done["trickle"] = predict(server, [ls_task(401, f"http://localhost:{hostile.port}/trickle")])

    slow = threading.Thread(target=trickle)
    slow.start()
    assert wait_for(lambda: "/trickle" in hostile.paths(), 10)
    normal = [threading.Thread(target=lambda s=s, i=i: done.__setitem__(s, predict(server, [ls_task(410 + i,
              local(f"song{s}"))]))) for i, s in enumerate(NORMAL)]
    for thread in normal:
        thread.start()
    health = requests.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200
    for thread in normal:
        thread.join(300)
    assert "trickle" not in done, "the normal songs waited for the trickling download"
    assert all(not failed(done[s][0]) for s in NORMAL)
    slow.join(FETCH_TIMEOUT + 60)
    assert failed(done["trickle"][0])
    assert f"FETCH_TIMEOUT={FETCH_TIMEOUT} s" in log_line(server, 401)
    assert hostile.left["/trickle"].wait(10)


def test_one_request_with_a_trickling_task_still_predicts_the_others(server, hostile):
    tasks = [ls_task(501, f"http://localhost:{hostile.port}/trickle")]
    tasks += [ls_task(502 + i, local(f"song{s}")) for i, s in enumerate(NORMAL)]
    results = predict(server, tasks)
    assert failed(results[0]) and not any(failed(r) for r in results[1:])


def test_decompression_bomb_is_refused_and_the_server_goes_on(server):
    [bomb, good] = predict(server, [ls_task(601, local("bomb.flac")), ls_task(602, local("song.wav"))])
    assert failed(bomb) and not failed(good)
    assert "720.0 min long" in log_line(server, 601) and "MAX_AUDIO_SECONDS" in log_line(server, 601)
    print(f"peak RSS of the gunicorn processes: {server.peak_rss_mb():.0f} MB")
    assert server.peak_rss_mb() < 600  # decoding the 12 hours took 8.3 GB


def test_oversized_request_bodies_get_413(server):
    big = json.dumps(predict_body([ls_task(1, "x" * (2 << 20))]))
    response = requests.post(f"{server.url}/predict", data=big, headers={"Content-Type": "application/json"},
                             timeout=60)
    assert response.status_code == 413 and "MAX_REQUEST_MB=1" in response.json()["error"]

    def chunks():  # chunked transfer: no Content-Length to refuse up front
        yield b'{"tasks": [], "pad": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = requests.post(f"{server.url}/predict", data=chunks(), headers={"Content-Type": "application/json"},
                             timeout=60)
    assert response.status_code == 413
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200


def test_webhook_ids_that_are_not_ids_get_400(server):
    for bad in ("Infinity", "1e30", "5.9"):
        body = '{"action": "TASKS_CREATED", "project": {"id": 1}, "tasks": [{"id": %s}]}' % bad
        response = requests.post(f"{server.url}/webhook", data=body, headers={"Content-Type": "application/json"},
                                 timeout=10)
        assert response.status_code == 400 and "task id" in response.json()["error"], bad


def test_concurrent_requests_for_one_uncached_song_compute_it_once(server):
    """Ten requests for one song at once, spread over both gunicorn workers: one computes, the others wait for
    it and read the cache."""
    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda t=t: results.__setitem__(t, predict(server, [ls_task(t, local(
        "song.opus"))]))) for t in range(700, 710)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert len(results) == 10 and all(not failed(r[0]) for r in results.values())
    assert len({json.dumps(r[0]["result"], sort_keys=True) for r in results.values()}) == 1
    computed = re.findall(r"task (7\d\d): \d+ regions from", server.text_log())
    assert len(computed) == 1, computed
