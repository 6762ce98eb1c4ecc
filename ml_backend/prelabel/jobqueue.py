"""The persistent pre-labeling queue: Label Studio's TASKS_CREATED webhook puts tasks in, the worker
(``ml_backend/prelabel/worker.py``) takes them out, predicts and posts the predictions back.

Two stores with one interface:

- SQLite in ``MODEL_DIR`` (default): one machine, any number of gunicorn workers; survives restarts.
- Redis (``QUEUE_URL=redis://host:6379/0``): several backend machines share the work.

A job is one (project, task) pair. Claiming a job leases it for ``lease_seconds``; a worker that dies without
finishing leaves the lease to expire (or, on the same host, is noticed as dead at once) and the job goes back to
pending, so queued work survives crashes and restarts. Each claim counts as an attempt; after ``max_attempts``
failures the job moves to the failed list, which ``/health`` reports, and the rest of the queue moves on.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

QUEUE_FILE = "prelabel_queue.sqlite3"
DEFAULT_LEASE_SECONDS = 900.0  # longer than any one song takes; a crashed worker's job waits at most this long
DEFAULT_RETRY_DELAY = 5.0  # seconds before the first retry; doubles with each attempt, capped at 5 minutes
MAX_RETRY_DELAY = 300.0
MAX_ERROR_CHARS = 500


class QueueError(RuntimeError):
    """The queue store cannot be opened or used; the message names it and what to do."""


@dataclass
class Job:
    """One task to pre-label. ``attempts`` counts the tries started so far, the current one included."""

    project_id: int
    task_id: int
    attempts: int = 0
    last_error: str = ""


@dataclass
class FailedJob:
    """A task that failed ``max_attempts`` times; ``failed_at`` is a Unix time in seconds."""

    project_id: int
    task_id: int
    attempts: int
    error: str
    failed_at: float


def retry_delay(attempts: int, base: float) -> float:
    """Seconds to wait before the next try after ``attempts`` failed tries: base, 2*base, 4*base, ... capped."""
    if base <= 0:
        return 0.0
    return min(MAX_RETRY_DELAY, base * 2 ** max(0, attempts - 1))


def process_start(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot (field 22 of ``/proc/<pid>/stat``); "" where there is
    no /proc or no such process. Tells a restarted process from a dead one that had the same pid (in a container
    gunicorn's worker gets the same small pid after every restart)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read().decode("ascii", "replace")
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may hold spaces or ")"; fields after it are plain
    fields = data[data.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def pid_scope() -> str:
    """Which processes this one can see: a short hash of the kernel's boot id and this pid namespace. Containers
    that share a hostname (compose ``hostname:``, replicas of one service) have their own pid namespaces, so a pid
    judged here says nothing about a process of another scope."""
    parts = []
    for name in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(name) if name.endswith("/pid") else Path(name).read_text().strip())
        except OSError:
            parts.append("")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12] if any(parts) else ""


_NONCES: dict[int, str] = {}  # pid -> random part of its owner name (a forked child gets its own)


def owner_name() -> str:
    """``host:pid:start:scope:nonce`` of this process (start: ``process_start``; scope: ``pid_scope``; nonce:
    random per process), stored with a claimed job so that a restart in the same pid namespace can reclaim it at
    once. The nonce keeps owners unique even where hostname, pid and start time coincide (two containers)."""
    pid = os.getpid()
    nonce = _NONCES.setdefault(pid, uuid.uuid4().hex[:12])
    return f"{socket.gethostname()}:{pid}:{process_start(pid)}:{pid_scope()}:{nonce}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:start:scope:nonce``; ``host:pid:start`` or ``host:pid`` from older
    versions) was a process this one can see (same host and pid namespace) that no longer exists: no such pid,
    or the pid now belongs to a process started at another time. Owners elsewhere, another container with the
    same hostname included, are never judged dead here: their leases expire instead."""
    host, pid, started, scope = (owner.split(":") + ["", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if scope and scope != pid_scope():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's: the start time still tells whether it is the owner
    current = process_start(int(pid))
    return bool(started and current and current != started)


def _short(error: str) -> str:
    error = " ".join(str(error).split())
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."


class JobQueue(ABC):
    """The queue interface shared by the SQLite and Redis stores."""

    def __init__(self, max_attempts: int = 3, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 retry_base: float = DEFAULT_RETRY_DELAY) -> None:
        self.max_attempts = max(1, int(max_attempts))
        self.lease_seconds = float(lease_seconds)
        self.retry_base = float(retry_base)

    @abstractmethod
    def enqueue(self, jobs: Iterable[tuple[int, int]]) -> int:
        """Add (project_id, task_id) pairs; a task already pending or running is not added twice, a failed one
        starts over. Returns how many were added."""

    @abstractmethod
    def claim(self) -> Job | None:
        """Lease the oldest job that is due (or whose worker died) and count an attempt; None when none is due."""

    @abstractmethod
    def complete(self, job: Job) -> None:
        """The job is done (prediction posted, or nothing to do): remove it."""

    @abstractmethod
    def fail(self, job: Job, error: str) -> bool:
        """Record a failed try. Returns True when the job will be retried (after a delay), False when it has used
        up ``max_attempts`` and moved to the failed list."""

    @abstractmethod
    def release(self, job: Job) -> None:
        """Give a claimed job back without counting the try (the worker is shutting down)."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """{"pending": n, "running": n, "failed": n, "done": n}."""

    @abstractmethod
    def failed_jobs(self, limit: int = 50) -> list[FailedJob]:
        """The most recently failed jobs, newest first."""

    def pending_count(self) -> int:
        """Jobs not finished yet (waiting or being worked on): the queue length ``/health`` reports."""
        c = self.counts()
        return c["pending"] + c["running"]

    def health(self, limit: int = 20) -> dict:
        """What ``/health`` and ``/metrics`` show about pre-labeling."""
        c = self.counts()
        return {
            "queue_length": c["pending"] + c["running"],
            "queue": c,
            "failed_tasks": [asdict(f) for f in self.failed_jobs(limit)],
        }

    def close(self) -> None:  # pragma: no cover - trivial in subclasses that hold nothing
        pass


class SQLiteQueue(JobQueue):
    """The queue in one SQLite file. Safe across threads and processes on one machine (WAL, immediate
    transactions for claims)."""

    def __init__(self, path: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._local = threading.local()
            self._db().executescript("""
                CREATE TABLE IF NOT EXISTS jobs (
                    project_id INTEGER NOT NULL, task_id INTEGER NOT NULL,
                    state TEXT NOT NULL,              -- pending | running | failed
                    attempts INTEGER NOT NULL DEFAULT 0,
                    not_before REAL NOT NULL DEFAULT 0, lease_until REAL NOT NULL DEFAULT 0,
                    owner TEXT NOT NULL DEFAULT '', last_error TEXT NOT NULL DEFAULT '',
                    created_at REAL NOT NULL, updated_at REAL NOT NULL,
                    PRIMARY KEY (project_id, task_id));
                CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, not_before);
                CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                INSERT OR IGNORE INTO counters VALUES ('done', 0);
            """)
        except (sqlite3.Error, OSError) as e:
            raise QueueError(f"cannot open the pre-labeling queue {self.path}: {e}. Check that MODEL_DIR is a "
                             "writable folder on a local disk (SQLite locks do not work on every network share), "
                             "or set QUEUE_URL=redis://...") from e

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> "SQLiteQueue._Tx":
        return self._Tx(self._db())

    def enqueue(self, jobs: Iterable[tuple[int, int]]) -> int:
        try:
            return self._enqueue(jobs)
        except sqlite3.Error as e:  # locked for too long, disk full, a broken file: nothing was added
            raise QueueError(f"the pre-labeling queue {self.path} cannot take jobs: {e}") from e

    def _enqueue(self, jobs: Iterable[tuple[int, int]]) -> int:
        now = time.time()
        added = 0
        with self._tx() as db:
            for project_id, task_id in jobs:
                row = db.execute("SELECT state FROM jobs WHERE project_id=? AND task_id=?",
                                 (int(project_id), int(task_id))).fetchone()
                if row is None:
                    db.execute("INSERT INTO jobs (project_id, task_id, state, created_at, updated_at) "
                               "VALUES (?, ?, 'pending', ?, ?)", (int(project_id), int(task_id), now, now))
                    added += 1
                elif row[0] == "failed":
                    db.execute("UPDATE jobs SET state='pending', attempts=0, not_before=0, last_error='', "
                               "updated_at=? WHERE project_id=? AND task_id=?", (now, int(project_id), int(task_id)))
                    added += 1
        return added

    def _reclaim_dead(self, db: sqlite3.Connection, now: float) -> None:
        """Running jobs whose lease expired, or whose owner died on this host, go back to pending."""
        for project_id, task_id, owner, lease_until in db.execute(
                "SELECT project_id, task_id, owner, lease_until FROM jobs WHERE state='running'").fetchall():
            if lease_until < now or owner_is_dead(owner):
                db.execute("UPDATE jobs SET state='pending', owner='', updated_at=? WHERE project_id=? AND task_id=?",
                           (now, project_id, task_id))

    def claim(self) -> Job | None:
        now = time.time()
        with self._tx() as db:
            self._reclaim_dead(db, now)
            row = db.execute("SELECT project_id, task_id, attempts, last_error FROM jobs "
                             "WHERE state='pending' AND not_before<=? ORDER BY created_at, task_id LIMIT 1",
                             (now,)).fetchone()
            if row is None:
                return None
            job = Job(project_id=row[0], task_id=row[1], attempts=row[2] + 1, last_error=row[3])
            db.execute("UPDATE jobs SET state='running', attempts=?, lease_until=?, owner=?, updated_at=? "
                       "WHERE project_id=? AND task_id=?",
                       (job.attempts, now + self.lease_seconds, owner_name(), now, job.project_id, job.task_id))
            return job

    def complete(self, job: Job) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE project_id=? AND task_id=?", (job.project_id, job.task_id))
            db.execute("UPDATE counters SET value=value+1 WHERE name='done'")

    def fail(self, job: Job, error: str) -> bool:
        now = time.time()
        retry = job.attempts < self.max_attempts
        with self._tx() as db:
            if retry:
                db.execute("UPDATE jobs SET state='pending', owner='', last_error=?, not_before=?, updated_at=? "
                           "WHERE project_id=? AND task_id=?",
                           (_short(error), now + retry_delay(job.attempts, self.retry_base), now,
                            job.project_id, job.task_id))
            else:
                db.execute("UPDATE jobs SET state='failed', owner='', last_error=?, updated_at=? "
                           "WHERE project_id=? AND task_id=?", (_short(error), now, job.project_id, job.task_id))
        return retry

    def release(self, job: Job) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state='pending', owner='', attempts=MAX(attempts-1, 0), updated_at=? "
                       "WHERE project_id=? AND task_id=? AND state='running'",
                       (time.time(), job.project_id, job.task_id))

    def counts(self) -> dict[str, int]:
        db = self._db()
        c = {"pending": 0, "running": 0, "failed": 0}
        for state, n in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            c[state] = n
        c["done"] = db.execute("SELECT value FROM counters WHERE name='done'").fetchone()[0]
        return c

    def failed_jobs(self, limit: int = 50) -> list[FailedJob]:
        rows = self._db().execute("SELECT project_id, task_id, attempts, last_error, updated_at FROM jobs "
                                  "WHERE state='failed' ORDER BY updated_at DESC LIMIT ?", (int(limit),))
        return [FailedJob(*row) for row in rows]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


# Redis layout under one prefix: a hash per job, a sorted set of pending jobs scored by the time they are due, a
# sorted set of running jobs scored by lease end, a sorted set of failed jobs scored by failure time, a done counter.
_CLAIM = """
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, key in ipairs(expired) do
  redis.call('ZREM', KEYS[2], key)
  redis.call('ZADD', KEYS[1], 0, key)
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #due == 0 then return nil end
local key = due[1]
redis.call('ZREM', KEYS[1], key)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), key)
local attempts = redis.call('HINCRBY', ARGV[3] .. key, 'attempts', 1)
redis.call('HSET', ARGV[3] .. key, 'owner', ARGV[4])
return {key, attempts, redis.call('HGET', ARGV[3] .. key, 'last_error') or ''}
"""

# Enqueue in one script (atomic: no crash between steps can leave a job hash that is in no set, which would make
# every later enqueue of the task a no-op). KEYS: pending, running, failed; ARGV: job prefix, now, keys...
# A failed job starts over; a hash left in no set by an older version is put back in pending.
_ENQUEUE = """
local added = 0
for i = 3, #ARGV do
  local key = ARGV[i]
  local job = ARGV[1] .. key
  if redis.call('ZSCORE', KEYS[3], key) then
    redis.call('ZREM', KEYS[3], key)
    redis.call('DEL', job)
  end
  if redis.call('EXISTS', job) == 0 then
    redis.call('HSET', job, 'created_at', ARGV[2], 'attempts', 0, 'last_error', '')
    redis.call('ZADD', KEYS[1], 0, key)
    added = added + 1
  elseif not redis.call('ZSCORE', KEYS[1], key) and not redis.call('ZSCORE', KEYS[2], key) then
    redis.call('ZADD', KEYS[1], 0, key)
    added = added + 1
  end
end
return added
"""


class RedisQueue(JobQueue):
    """The queue in Redis, for several backend machines. Claims are atomic (a Lua script)."""

    def __init__(self, url: str, prefix: str = "ls-acestep:prelabel", **kwargs) -> None:
        super().__init__(**kwargs)
        import redis

        self.url = url
        self.prefix = prefix
        try:
            self.redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)
            self.redis.ping()
        except (redis.RedisError, ValueError) as e:
            raise QueueError(f"cannot reach the pre-labeling queue at QUEUE_URL={url}: {e}. Start Redis there, "
                             "or leave QUEUE_URL empty to use SQLite in MODEL_DIR") from e
        self._claim = self.redis.register_script(_CLAIM)
        self._enqueue = self.redis.register_script(_ENQUEUE)
        self.k_pending, self.k_running = f"{prefix}:pending", f"{prefix}:running"
        self.k_failed, self.k_done, self.k_job = f"{prefix}:failed", f"{prefix}:done", f"{prefix}:job:"

    @staticmethod
    def _key(project_id: int, task_id: int) -> str:
        return f"{int(project_id)}:{int(task_id)}"

    def enqueue(self, jobs: Iterable[tuple[int, int]]) -> int:
        import redis

        keys = list(dict.fromkeys(self._key(p, t) for p, t in jobs))
        if not keys:
            return 0
        try:
            return int(self._enqueue(keys=[self.k_pending, self.k_running, self.k_failed],
                                     args=[self.k_job, time.time(), *keys]))
        except redis.RedisError as e:  # the script runs whole or not at all: nothing was added
            raise QueueError(f"the pre-labeling queue at QUEUE_URL={self.url} cannot take jobs: {e}") from e

    def _reclaim_dead(self) -> None:
        for key in self.redis.zrange(self.k_running, 0, -1):
            owner = self.redis.hget(self.k_job + key, "owner") or ""
            if owner_is_dead(owner) and self.redis.zrem(self.k_running, key):
                self.redis.zadd(self.k_pending, {key: 0})

    def claim(self) -> Job | None:
        self._reclaim_dead()
        got = self._claim(keys=[self.k_pending, self.k_running],
                          args=[time.time(), self.lease_seconds, self.k_job, owner_name()])
        if not got:
            return None
        key, attempts, last_error = got
        project_id, task_id = (int(x) for x in key.split(":"))
        return Job(project_id=project_id, task_id=task_id, attempts=int(attempts), last_error=last_error or "")

    def complete(self, job: Job) -> None:
        key = self._key(job.project_id, job.task_id)
        pipe = self.redis.pipeline()
        pipe.zrem(self.k_running, key).delete(self.k_job + key).incr(self.k_done)
        pipe.execute()

    def fail(self, job: Job, error: str) -> bool:
        key = self._key(job.project_id, job.task_id)
        retry = job.attempts < self.max_attempts
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.zrem(self.k_running, key)
        pipe.hset(self.k_job + key, mapping={"last_error": _short(error), "owner": "", "updated_at": now})
        if retry:
            pipe.zadd(self.k_pending, {key: now + retry_delay(job.attempts, self.retry_base)})
        else:
            pipe.zadd(self.k_failed, {key: now})
        pipe.execute()
        return retry

    def release(self, job: Job) -> None:
        key = self._key(job.project_id, job.task_id)
        if self.redis.zrem(self.k_running, key):
            self.redis.hincrby(self.k_job + key, "attempts", -1)
            self.redis.zadd(self.k_pending, {key: 0})

    def counts(self) -> dict[str, int]:
        pipe = self.redis.pipeline()
        pipe.zcard(self.k_pending).zcard(self.k_running).zcard(self.k_failed).get(self.k_done)
        pending, running, failed, done = pipe.execute()
        return {"pending": pending, "running": running, "failed": failed, "done": int(done or 0)}

    def failed_jobs(self, limit: int = 50) -> list[FailedJob]:
        out = []
        for key, failed_at in self.redis.zrevrange(self.k_failed, 0, int(limit) - 1, withscores=True):
            info = self.redis.hgetall(self.k_job + key)
            project_id, task_id = (int(x) for x in key.split(":"))
            out.append(FailedJob(project_id, task_id, int(info.get("attempts", 0)), info.get("last_error", ""),
                                 failed_at))
        return out

    def close(self) -> None:
        self.redis.close()


def open_queue(settings, **kwargs) -> JobQueue:
    """The queue named by the settings: Redis when ``QUEUE_URL`` is ``redis://`` or ``rediss://``, else SQLite in
    ``MODEL_DIR``. ``kwargs`` (lease_seconds, retry_base) override the defaults, for tests."""
    url = (settings.queue_url or "").strip()
    kwargs.setdefault("max_attempts", settings.max_attempts)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisQueue(url, **kwargs)
    if url:
        raise QueueError(f"QUEUE_URL={url!r}: use redis://host:6379/0, or leave it empty for SQLite in MODEL_DIR")
    return SQLiteQueue(Path(settings.model_dir) / QUEUE_FILE, **kwargs)


def describe(queue: JobQueue) -> str:
    """One line naming the store, for start-up logs."""
    if isinstance(queue, RedisQueue):
        return f"Redis queue at {queue.url}"
    return f"SQLite queue at {queue.path}"


__all__ = ["Job", "FailedJob", "JobQueue", "SQLiteQueue", "RedisQueue", "QueueError", "open_queue", "describe",
           "retry_delay"]
