"""The pre-labeling queue on both stores: SQLite in a temp MODEL_DIR and a real redis-server started here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ml_backend.prelabel.jobqueue import (QueueError, RedisQueue, SQLiteQueue, open_queue, owner_name, process_start,
                                 retry_delay)
from ml_backend.settings import Settings


@pytest.fixture(params=["sqlite", "redis"])
def make_queue(request, tmp_path):
    """A factory for queues on one store; several calls share the same data (as several processes would)."""
    made = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = f"test:{request.node.name}:{time.time_ns()}"

        def make(**kw):
            made.append(RedisQueue(url, prefix=prefix, **kw))
            return made[-1]
    else:
        def make(**kw):
            made.append(SQLiteQueue(tmp_path / "q.sqlite3", **kw))
            return made[-1]
    yield make
    for q in made:
        q.close()


def test_enqueue_claim_complete_in_order_without_duplicates(make_queue):
    q = make_queue(retry_base=0)
    assert q.enqueue([(1, 10), (1, 11), (1, 10)]) == 2
    assert q.enqueue([(1, 11)]) == 0  # already pending
    assert q.pending_count() == 2
    first = q.claim()
    assert (first.project_id, first.task_id, first.attempts) == (1, 10, 1)
    assert q.enqueue([(1, 10)]) == 0  # running: not queued twice
    second = q.claim()
    assert second.task_id == 11
    assert q.claim() is None
    q.complete(first)
    q.complete(second)
    assert q.counts() == {"pending": 0, "running": 0, "failed": 0, "done": 2}
    assert q.pending_count() == 0


def test_failing_task_is_retried_then_reported_without_blocking_others(make_queue):
    q = make_queue(max_attempts=2, retry_base=0)
    q.enqueue([(3, 1), (3, 2)])
    bad = q.claim()
    assert bad.task_id == 1
    assert q.fail(bad, "audio file is not audio\n(see log)") is True  # first failure: retried
    jobs = {}
    for _ in range(2):  # both are due now; the stores may hand them out in either order
        job = q.claim()
        jobs[job.task_id] = job
    assert set(jobs) == {1, 2}
    assert jobs[1].attempts == 2 and jobs[1].last_error == "audio file is not audio (see log)"
    q.complete(jobs[2])
    assert q.fail(jobs[1], "still broken") is False  # max_attempts used: reported
    assert q.claim() is None
    assert q.counts() == {"pending": 0, "running": 0, "failed": 1, "done": 1}
    health = q.health()
    assert health["queue_length"] == 0
    assert health["failed_tasks"][0]["task_id"] == 1
    assert health["failed_tasks"][0]["attempts"] == 2
    assert health["failed_tasks"][0]["error"] == "still broken"
    # importing the task again (or re-queueing it by hand) starts it over
    assert q.enqueue([(3, 1)]) == 1
    assert q.claim().attempts == 1


def test_retry_waits_for_its_delay(make_queue):
    q = make_queue(max_attempts=3, retry_base=60)
    q.enqueue([(1, 5)])
    q.fail(q.claim(), "timeout")
    assert q.claim() is None  # not due for a minute
    assert q.pending_count() == 1


def test_queued_and_leased_work_survives_a_restart(make_queue):
    q = make_queue(lease_seconds=0.2, retry_base=0)
    q.enqueue([(2, 1), (2, 2)])
    lost = q.claim()  # this worker "crashes" holding the job
    q.close()
    again = make_queue(lease_seconds=0.2, retry_base=0)
    assert again.pending_count() == 2
    time.sleep(0.3)  # the lease runs out
    got = {again.claim().task_id, again.claim().task_id}
    assert got == {1, 2}
    assert lost.task_id in got


def test_job_of_a_dead_process_on_this_host_is_reclaimed_at_once(make_queue, tmp_path):
    """A worker killed with SIGKILL (another process) leaves its job; the next claim takes it back at once."""
    q = make_queue(retry_base=0)
    q.enqueue([(4, 1)])
    if isinstance(q, SQLiteQueue):
        code = (f"from ml_backend.prelabel.jobqueue import SQLiteQueue; q = SQLiteQueue({str(q.path)!r}); "
                "print(q.claim().task_id)")
    else:
        code = (f"from ml_backend.prelabel.jobqueue import RedisQueue; q = RedisQueue({q.url!r}, prefix={q.prefix!r}); "
                "print(q.claim().task_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "1"
    job = q.claim()  # the lease (15 min) has not run out, but its owner is gone
    assert job is not None and job.task_id == 1 and job.attempts == 2


def _set_owner(q, job, owner: str) -> None:
    """Rewrite who holds a running job, as a process that claimed it would have stored."""
    if isinstance(q, SQLiteQueue):
        with q._tx() as db:
            db.execute("UPDATE jobs SET owner=? WHERE project_id=? AND task_id=?", (owner, job.project_id, job.task_id))
    else:
        q.redis.hset(q.k_job + q._key(job.project_id, job.task_id), "owner", owner)


def test_job_of_a_dead_process_whose_pid_was_reused_is_reclaimed_at_once(make_queue):
    """In a container a restarted worker gets the dead one's pid again: the start time tells them apart."""
    q = make_queue(retry_base=0)
    q.enqueue([(5, 1), (5, 2)])
    mine, old = q.claim(), q.claim()
    host, pid, started, _scope, _nonce = owner_name().split(":")
    assert pid == str(os.getpid()) and started == process_start(os.getpid()) and started.isdigit()
    _set_owner(q, old, f"{host}:{pid}:{int(started) - 1}")  # same host and pid, started earlier: a dead process
    again = q.claim()
    assert again is not None and again.task_id == old.task_id and again.attempts == 2
    assert q.claim() is None  # the job this very process holds stays with it
    assert mine.task_id != again.task_id
    _set_owner(q, mine, f"{host}:{pid}")  # an owner stored by an older version (no start time): still alive
    assert q.claim() is None
    assert q.counts()["running"] == 2


def test_release_gives_the_job_back_without_counting_the_try(make_queue):
    q = make_queue(retry_base=0)
    q.enqueue([(1, 1)])
    q.release(q.claim())
    assert q.claim().attempts == 1


def test_open_queue_picks_the_store_from_settings(tmp_path, redis_url):
    s = Settings(model_dir=tmp_path / "model_dir", max_attempts=7)
    q = open_queue(s)
    assert isinstance(q, SQLiteQueue) and q.path.parent == tmp_path / "model_dir" and q.max_attempts == 7
    q.close()
    r = open_queue(replace(s, queue_url=redis_url))
    assert isinstance(r, RedisQueue)
    r.close()
    with pytest.raises(QueueError, match="QUEUE_URL='amqp://x'"):
        open_queue(replace(s, queue_url="amqp://x"))
    with pytest.raises(QueueError, match="cannot reach the pre-labeling queue at QUEUE_URL=redis://127.0.0.1:1/0"):
        open_queue(replace(s, queue_url="redis://127.0.0.1:1/0"))


def test_unwritable_model_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(QueueError, match=r"cannot open the pre-labeling queue .*file/q.sqlite3.*MODEL_DIR"):
        SQLiteQueue(blocker / "q.sqlite3")


def test_retry_delay_doubles_and_is_capped():
    assert [retry_delay(n, 5) for n in (1, 2, 3)] == [5, 10, 20]
    assert retry_delay(30, 5) == 300
    assert retry_delay(3, 0) == 0
