"""Prediction cache in MODEL_DIR: a repeated ``/predict`` of the same song returns at once, after a restart too.

The key is the audio's content hash (so a re-upload under another name still hits), the model version (engine,
model id, prompt, sampling and segmentation parameters) and the label config's hash. SQLite in WAL mode with a
busy timeout lets several gunicorn workers (processes) read and write it at the same time. The cache is an
optimisation: when it cannot be opened or written, predictions go on without it and a warning is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_FILE = "prediction_cache.sqlite3"
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's lock
CHUNK_BYTES = 1 << 20  # file hashing reads 1 MiB at a time, so hour-long files cost no memory


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(audio_sha256: str, model_version: str, config_hash: str) -> str:
    """The cache key of one song's prediction under one model version and one label config."""
    return hashlib.sha256(f"{audio_sha256}\n{model_version}\n{config_hash}".encode()).hexdigest()


@dataclass
class CacheStats:
    """Counters of this process (exposed by /metrics and used by tests)."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    errors: int = 0


class PredictionCache:
    """Key -> prediction dict, stored in ``<model_dir>/prediction_cache.sqlite3``."""

    def __init__(self, model_dir: Path):
        self.path = Path(model_dir) / CACHE_FILE
        self.stats = CacheStats()
        self._local = threading.local()  # one connection per thread (sqlite3 connections are not shared)
        self._disabled = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._disabled:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS predictions ("
                " key TEXT PRIMARY KEY, prediction TEXT NOT NULL, created REAL NOT NULL)")
        except (sqlite3.Error, OSError) as exc:
            log.warning("prediction cache %s cannot be used (%s); predicting without a cache. "
                        "Delete the file or fix MODEL_DIR's permissions to re-enable it.", self.path, exc)
            self._disabled = True
            self.stats.errors += 1
            return None
        self._local.conn = conn
        return conn

    def get(self, key: str, recheck: bool = False) -> dict | None:
        """The cached prediction for ``key``, or None. ``recheck``: a second lookup of a key whose first lookup
        was counted as a miss (the song was then waited for under its lock): found now, it counts as a hit in
        place of that miss; not found, it counts nothing more. Each task is counted once either way."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT prediction FROM predictions WHERE key = ?", (key,)).fetchone()
            prediction = json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError) as exc:
            log.warning("prediction cache read failed (%s); predicting again", exc)
            self.stats.errors += 1
            return None
        if prediction is None:
            self.stats.misses += 0 if recheck else 1
        else:
            self.stats.hits += 1
            if recheck:
                self.stats.misses = max(0, self.stats.misses - 1)
        return prediction

    def put(self, key: str, prediction: dict) -> None:
        """Store a prediction; a failure is logged, never raised (the prediction is still returned)."""
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute("INSERT OR REPLACE INTO predictions (key, prediction, created) VALUES (?, ?, ?)",
                         (key, json.dumps(prediction, ensure_ascii=False), time.time()))
            self.stats.writes += 1
        except sqlite3.Error as exc:
            log.warning("prediction cache write failed (%s); the prediction is returned uncached", exc)
            self.stats.errors += 1

    def __len__(self) -> int:
        conn = self._connect()
        if conn is None:
            return 0
        return conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
