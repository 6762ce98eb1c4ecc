"""The prediction cache: keys, persistence across instances, several processes writing at once, and a cache
that cannot be opened (predictions go on without it)."""

from __future__ import annotations

import multiprocessing
import sqlite3

from ml_backend.prediction.cache import CACHE_FILE, PredictionCache, cache_key, file_sha256


def test_file_hash_follows_content_not_name(tmp_path):
    a, b, c = tmp_path / "a.wav", tmp_path / "b.flac", tmp_path / "c.wav"
    a.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    b.write_bytes(b"x" * 3_000_000)
    c.write_bytes(b"x" * 2_999_999 + b"y")
    assert file_sha256(a) == file_sha256(b) != file_sha256(c)


def test_key_depends_on_audio_version_and_config():
    base = cache_key("audio", "v1", "cfg")
    assert base == cache_key("audio", "v1", "cfg")
    assert len({base, cache_key("audio2", "v1", "cfg"), cache_key("audio", "v2", "cfg"),
                cache_key("audio", "v1", "cfg2")}) == 4


def test_a_recheck_counts_each_lookup_once(tmp_path):
    """A song waited for under its lock is looked up again: found then, its first miss becomes a hit; still
    missing, nothing more is counted."""
    cache = PredictionCache(tmp_path)
    assert cache.get("a") is None and cache.get("b") is None
    cache.put("a", {"result": [], "score": 1.0, "model_version": "v"})
    assert cache.get("a", recheck=True) is not None
    assert cache.get("b", recheck=True) is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_survives_a_new_instance(tmp_path):
    prediction = {"result": [{"id": "seg1", "value": {"text": ["café ♪"]}}], "score": 0.5, "model_version": "v"}
    first = PredictionCache(tmp_path)
    assert first.get("k") is None
    first.put("k", prediction)
    second = PredictionCache(tmp_path)  # as after a restart
    assert second.get("k") == prediction
    assert (second.stats.hits, first.stats.misses, first.stats.writes) == (1, 1, 1)


def _writer(folder: str, worker: int, count: int, queue) -> None:
    cache = PredictionCache(folder)
    for i in range(count):
        cache.put(f"{worker}-{i}", {"result": [], "score": i / count, "model_version": f"w{worker}"})
        cache.get(f"{(worker + 1) % 4}-{i}")  # read what another process may be writing
    queue.put((worker, cache.stats.writes, cache.stats.errors))


def test_several_processes_write_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 60, queue)) for w in range(4)]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(reports) == [(w, 60, 0) for w in range(4)]
    cache = PredictionCache(tmp_path)
    assert len(cache) == 240
    assert cache.get("3-59") == {"result": [], "score": 59 / 60, "model_version": "w3"}
    mode = sqlite3.connect(tmp_path / CACHE_FILE).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_unusable_cache_is_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    cache = PredictionCache(tmp_path)
    cache.put("k", {"result": []})
    assert cache.get("k") is None
    assert cache.stats.errors == 1
    assert "cannot be used" in caplog.text and CACHE_FILE in caplog.text
