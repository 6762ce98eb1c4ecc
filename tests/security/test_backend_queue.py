"""The pre-labeling webhook and queue under hostile or broken conditions: ids that are not ids get 400 (never a 500
nor a truncated id), Redis down gets 503 (the delivery is retried, nothing is acknowledged and dropped), enqueue
is one Redis script, and queue owners stay unique when containers share a hostname. A real redis-server is
started, stopped and started again here."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from ml_backend.prelabel import jobqueue, webhook
from ml_backend.prelabel.jobqueue import QueueError, RedisQueue, owner_is_dead, owner_name
from ml_backend.server.app import create_app
from ml_backend.settings import Settings
from tests.security.backend import RedisServer


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def _settings(tmp_path, **extra) -> Settings:
    return Settings(engine="dsp", model_dir=tmp_path / "model_dir", label_studio_url="http://127.0.0.1:9",
                    label_studio_api_key="key", queue_workers=0, **extra)


@pytest.fixture(autouse=True)
def fresh_webhook_queues():
    webhook._QUEUES.clear()  # one queue per settings per process: each test opens its own
    yield
    for queue in webhook._QUEUES.values():
        queue.close()
    webhook._QUEUES.clear()


def _created(task_id_json: str) -> bytes:
    return ('{"action": "TASKS_CREATED", "project": {"id": 3}, "tasks": [{"id": %s, "data": {}}]}'
            % task_id_json).encode()


@pytest.mark.parametrize("task_id", ["Infinity", "-Infinity", "NaN", "1e30", "5.9", "-4", "0", '"5.9"',
                                     "9223372036854775808", "true", "[1]"])
def test_webhook_refuses_ids_that_are_not_ids(tmp_path, task_id):
    settings = _settings(tmp_path)
    client = create_app(settings).test_client()
    response = client.post("/webhook", data=_created(task_id), content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "task id" in response.get_json()["error"] and "Traceback" not in response.get_data(as_text=True)
    assert jobqueue.open_queue(settings).counts()["pending"] == 0  # nothing half-queued


def test_webhook_takes_whole_ids_in_every_json_shape(tmp_path):
    settings = _settings(tmp_path)
    client = create_app(settings).test_client()
    for task_id in ("5", "6.0", '"7"'):
        response = client.post("/webhook", data=_created(task_id), content_type="application/json")
        assert response.status_code == 200 and response.get_json()["queued"] == 1
    queue = jobqueue.open_queue(settings)
    assert sorted(queue.claim().task_id for _ in range(3)) == [5, 6, 7]


def test_webhook_answers_503_while_redis_is_down_and_queues_once_it_is_back(tmp_path, redis_server, caplog):
    settings = _settings(tmp_path, queue_url=redis_server.url)
    client = create_app(settings).test_client()
    assert client.post("/webhook", data=_created("1"), content_type="application/json").status_code == 200

    redis_server.stop()
    with caplog.at_level(logging.ERROR, logger="ml_backend"):
        down = client.post("/webhook", data=_created("2"), content_type="application/json")
    assert down.status_code == 503, down.get_data(as_text=True)
    assert "not queued" in down.get_json()["error"] and "QUEUE_URL" in down.get_json()["error"]
    assert any("503" in r.getMessage() for r in caplog.records)  # logged, not silently dropped
    # a backend that starts while Redis is down answers the same
    webhook._QUEUES.clear()
    assert client.post("/webhook", data=_created("2"), content_type="application/json").status_code == 503

    redis_server.start()  # an empty Redis (no persistence): Label Studio's retry brings task 2 in
    retry = client.post("/webhook", data=_created("2"), content_type="application/json")
    assert retry.status_code == 200 and retry.get_json()["queued"] == 1
    assert RedisQueue(redis_server.url).claim().task_id == 2


def test_enqueue_is_one_script_and_repairs_a_job_left_in_no_set(redis_server):
    queue = RedisQueue(redis_server.url, prefix="t")
    # what a crash between the old enqueue's steps left: the job's hash, in no set; every enqueue was a no-op
    queue.redis.hset("t:job:1:10", mapping={"created_at": 1, "attempts": 0, "last_error": ""})
    assert queue.enqueue([(1, 10), (1, 11), (1, 11)]) == 2
    assert queue.counts()["pending"] == 2
    job = queue.claim()
    assert queue.enqueue([(job.project_id, job.task_id)]) == 0  # running: not queued twice
    redis_server.stop()
    with pytest.raises(QueueError, match="cannot take jobs"):
        queue.enqueue([(1, 12)])


def test_owner_names_are_unique_per_process_even_with_one_hostname():
    child = subprocess.run([sys.executable, "-c", "from ml_backend.prelabel.jobqueue import owner_name; "
                            "print(owner_name())"], capture_output=True, text=True, check=True).stdout.strip()
    mine = owner_name()
    assert mine != child and mine == owner_name()  # stable within a process
    host, pid, started, scope, nonce = mine.split(":")
    assert host == child.split(":")[0] and scope == child.split(":")[3] and nonce != child.split(":")[4]


def test_owners_of_another_container_with_the_same_hostname_are_not_judged_here():
    host, pid, started, scope, nonce = owner_name().split(":")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a pid that no longer exists here
    assert owner_is_dead(f"{host}:{gone}:{started}:{scope}:x")  # this pid namespace: judged at once
    # the same hostname in another pid namespace (another container): its lease expires instead
    assert not owner_is_dead(f"{host}:{gone}:{started}:0123456789ab:x")
    assert not owner_is_dead(f"{host}:{pid}:{started}:{scope}:{nonce}")  # this very process
