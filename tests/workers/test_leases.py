"""Job leases (app/leases.py, workers/worker.py): a live lease is never taken back, a lapsed one is, once."""

from __future__ import annotations

import threading
import time

import pytest
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Retry, get_current_job
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.rate_limit import RateLimit, RateLimitRegistry
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler

from app import leases
from app.queues import job_state
from tests.e2e.harness import wait_until
from tests.helpers import take_and_die
from workers.worker import SCHEDULER_SILENT_SECONDS, LeaseKeeper, LeaseLost, Worker, client


def tracked(key: str, seconds: float) -> str:
    """A job that records each run's start and end, and how many of its runs overlap."""
    redis = get_current_job().connection
    run = redis.incr(f"{key}:runs")
    redis.rpush(key, f"start {run}")
    if redis.incr(f"{key}:running") > 1:
        redis.set(f"{key}:overlapped", 1)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
        redis.rpush(key, f"end {run}")
        return f"run {run} done"
    except BaseException as exc:
        redis.rpush(key, f"stopped {run} by {type(exc).__name__}")
        raise
    finally:
        redis.decr(f"{key}:running")


def started(redis: Redis, lease: int, retries: int = 2, rate_limit: RateLimit | None = None) -> tuple[Worker, Job]:
    """A job taken by a worker exactly as ``Worker.execute_job`` takes it, and then left: a killed worker."""
    job = Queue("default", connection=redis).enqueue(
        tracked, "t", 0, retry=Retry(max=retries, interval=[60]) if retries else None, rate_limit=rate_limit)
    worker, taken = take_and_die(redis, "default", lease)
    assert taken.id == job.id
    return worker, taken


def lapse(redis: Redis, worker: Worker, lease: int) -> None:
    wait_until(lambda: not redis.exists(worker.key), timeout=lease + 3, what="the worker's key to lapse")
    wait_until(lambda: leases.lapsed_entries(redis, "default"), timeout=3, what="the lease to lapse")


def test_a_live_lease_is_never_taken_back(redis):
    _, job = started(redis, lease=30)
    assert leases.lapsed_entries(redis, "default") == []
    assert leases.recover_abandoned(redis, ["default"]) == {}
    [entry] = StartedJobRegistry("default", connection=redis).get_job_and_execution_ids(cleanup=False)
    assert leases.recover(redis, "default", f"{entry[0]}:{entry[1]}") is None
    assert job.get_status() == JobStatus.STARTED and Queue("default", connection=redis).count == 0
    assert job_state(redis, job.id) == "started"


def test_a_lapsed_lease_of_a_gone_worker_is_put_back_at_the_front_of_its_queue(redis):
    queue = Queue("default", connection=redis)
    worker, job = started(redis, lease=1)
    waiting = queue.enqueue(tracked, "other", 0)
    lapse(redis, worker, 1)
    assert job_state(redis, job.id) == "abandoned"

    assert leases.recover_abandoned(redis, ["default"]) == {"requeued": 1}

    job = Job.fetch(job.id, connection=redis)
    assert job.get_status() == JobStatus.QUEUED and queue.job_ids == [job.id, waiting.id]
    assert job.retries_left == 1  # a retry spent, as rq does for an abandoned job
    assert job.meta[leases.ABANDONED_BY] == worker.name
    assert StartedJobRegistry("default", connection=redis).get_job_ids(cleanup=False) == []
    assert job_state(redis, job.id) == "recovering"
    assert leases.recover_abandoned(redis, ["default"]) == {}  # nothing left to take


def test_a_lapsed_lease_cannot_be_renewed(redis):
    worker, job = started(redis, lease=1)
    [(job_id, execution_id)] = StartedJobRegistry("default", connection=redis).get_job_and_execution_ids(
        cleanup=False)
    lease = leases.Lease("default", job_id, execution_id, worker.name)
    assert lease.renew(redis, 2) is True  # live: extended
    lapse(redis, worker, 1)
    assert lease.renew(redis, 30) is False  # lapsed: only a recoverer may have it now
    assert leases.lapsed_entries(redis, "default") == [lease.entry]


def test_a_lapsed_lease_of_a_live_worker_is_left_alone(redis):
    worker, job = started(redis, lease=1)
    lapse(redis, worker, 1)
    worker.heartbeat(60)  # the worker is back (a clock jump, a leftover entry): not ours to take
    assert leases.recover_abandoned(redis, ["default"]) == {}
    assert job.get_status() == JobStatus.STARTED


def test_two_recoverers_racing_for_one_lease_put_the_job_back_once(redis):
    worker, job = started(redis, lease=1, retries=5)
    lapse(redis, worker, 1)
    [entry] = leases.lapsed_entries(redis, "default")
    outcomes: list[str | None] = []
    go = threading.Barrier(6)

    def recoverer() -> None:
        go.wait()
        outcomes.append(leases.recover(redis, "default", entry))  # each thread on a connection of its own

    threads = [threading.Thread(target=recoverer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("requeued") == 1 and outcomes.count(None) == 5, outcomes
    assert Queue("default", connection=redis).job_ids == [job.id]
    assert Job.fetch(job.id, connection=redis).retries_left == 4


def test_an_abandoned_job_without_retries_fails_and_gives_its_rate_limit_slot_back(redis):
    limit = RateLimit(key="shop:7", concurrency=1)
    worker, job = started(redis, lease=1, retries=0, rate_limit=limit)
    behind = Queue("default", connection=redis).enqueue(tracked, "behind", 0, rate_limit=limit)
    assert behind.get_status() == JobStatus.RATE_LIMITED  # the slot is the abandoned job's
    lapse(redis, worker, 1)

    assert leases.recover_abandoned(redis, ["default"]) == {"failed": 1}

    assert job.get_status() == JobStatus.FAILED
    assert job.id in FailedJobRegistry("default", connection=redis).get_job_ids(cleanup=False)
    assert "AbandonedJobError" in job.latest_result().exc_string
    assert behind.get_status() == JobStatus.QUEUED  # it got the slot
    assert RateLimitRegistry("shop:7", redis).get_allowed_job_ids() == [behind.id]


def test_the_dead_execution_is_forgotten(redis):
    worker, job = started(redis, lease=1)
    [execution] = job.get_executions()
    lapse(redis, worker, 1)
    leases.recover_abandoned(redis, ["default"])
    assert job.get_executions() == []
    assert not redis.exists(Execution(execution.id, job.id, connection=redis).key)


def test_a_copy_of_a_running_job_queued_twice_is_not_run(redis):
    # Anything that queues a job id twice (rq's registry clean-up racing a recoverer, two schedulers)
    # must not make it run twice at once: the second copy finds the run claimed and is dropped.
    _, job = started(redis, lease=30)
    Queue("default", connection=redis).push_job_id(job.id)
    Worker(["default"], connection=redis).work(burst=True, with_scheduler=False)
    assert redis.lrange("t", 0, -1) == []  # never started
    assert job.get_status() == JobStatus.STARTED and Queue("default", connection=redis).count == 0


def test_a_worker_whose_lease_was_taken_stops_the_job_and_leaves_its_records_to_the_new_run(redis):
    """A worker frozen past its lease (SIGSTOP, a paused VM) finds the job taken back when it wakes:
    the job stops there, its outcome is not recorded over the recovered run's, and the runs never overlap."""
    queue = Queue("default", connection=redis)
    job = queue.enqueue(tracked, "frozen", 6, retry=Retry(max=2, interval=[60]))
    worker = Worker(["default"], connection=redis, lease_seconds=2)
    thread_error: list[BaseException] = []

    def freeze_and_take_back() -> None:
        try:
            wait_until(lambda: redis.lrange("frozen", 0, -1) == [b"start 1"], timeout=10, what="the first run")
            # What a long freeze looks like from outside: lease and worker key lapsed, nobody renewing.
            key = StartedJobRegistry("default", connection=redis).key
            [entry] = redis.zrange(key, 0, -1)
            redis.zadd(key, {entry: 1})
            redis.delete(worker.key)
            assert leases.recover(redis, "default", entry.decode()) == "requeued"
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            thread_error.append(exc)

    helper = threading.Thread(target=freeze_and_take_back)
    helper.start()
    worker.work(burst=True, with_scheduler=False)  # runs the job, loses it, then runs the recovered copy
    helper.join()
    assert not thread_error, thread_error

    assert redis.lrange("frozen", 0, -1) == [b"start 1", b"stopped 1 by LeaseLost", b"start 2", b"end 2"]
    assert not redis.exists("frozen:overlapped")
    job = Job.fetch(job.id, connection=redis)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "run 2 done"
    assert job.retries_left == 1  # the recovery's retry only: the stopped run recorded no failure
    assert FailedJobRegistry("default", connection=redis).get_job_ids(cleanup=False) == []


def test_a_running_job_keeps_its_lease_well_past_it(redis):
    job = Queue("default", connection=redis).enqueue(tracked, "long", 4)
    Worker(["default"], connection=redis, lease_seconds=2).work(burst=True, with_scheduler=False)
    assert redis.lrange("long", 0, -1) == [b"start 1", b"end 1"]  # 4 s on a 2 s lease, renewed all along
    assert job.get_status() == JobStatus.FINISHED


@pytest.mark.parametrize("status", ["queued", "finished"])
def test_job_state_is_rqs_status_otherwise(redis, status):
    job = Queue("default", connection=redis).enqueue(tracked, "s", 0)
    if status == "finished":
        Worker(["default"], connection=redis).work(burst=True, with_scheduler=False)
    assert job_state(redis, job.id) == status
    assert job_state(redis, "no-such-job") is None


def test_a_silent_schedulers_lock_is_taken_over_by_a_live_worker(redis):
    """rq's scheduler lock outlives its holder by 61 s; a lost host's scheduler is replaced within 15 s."""
    lock = RQScheduler.get_locking_key("default")
    redis.set(lock, "lost-host-scheduler", px=61_000 - (SCHEDULER_SILENT_SECONDS + 5) * 1000)
    worker = Worker(["default"], connection=redis)
    worker._start_scheduler()
    assert not worker.scheduler.acquired_locks  # rq would wait out the lock
    keeper = LeaseKeeper(worker, 2)
    try:
        keeper.keep_scheduler()
        assert redis.get(lock).decode() == worker.scheduler.name
        # Started: it heartbeats (and handles SIGTERM, so that it can be stopped below).
        wait_until(lambda: redis.exists(worker.scheduler.key), timeout=10, what="the scheduler to start")
        assert worker.scheduler._process.is_alive()
    finally:
        worker.stop_scheduler()
        keeper.stop()


def test_a_live_schedulers_lock_is_left_alone(redis):
    lock = RQScheduler.get_locking_key("default")
    redis.set(lock, "busy-scheduler", px=61_000 - 2_000)  # refreshed two seconds ago
    worker = Worker(["default"], connection=redis)
    worker._start_scheduler()
    keeper = LeaseKeeper(worker, 2)
    try:
        keeper.keep_scheduler()
        assert redis.get(lock) == b"busy-scheduler" and worker.scheduler._process is None
    finally:
        keeper.stop()


def test_a_worker_cut_off_from_redis_stops_its_job_before_its_lease_could_lapse(redis):
    worker = Worker(["default"], connection=redis, lease_seconds=2)
    worker._install_signal_handlers()
    keeper = worker.keeper = LeaseKeeper(worker, 2)
    keeper.redis.close()
    keeper.redis = client(Redis(host="127.0.0.1", port=1), timeout=0.2)  # nothing answers there
    keeper.hold(leases.Lease("default", "job-1", "execution-1", worker.name))
    with pytest.raises(RedisError):  # a renewal missed, the last one just now: keep trying
        keeper.renew()
    assert keeper.held.lost is None
    keeper.held.renewed_at -= 1.1  # the last one more than half the lease ago: stop the job
    with pytest.raises(LeaseLost):  # raised in the job (this thread here) by the keeper's signal
        keeper.renew()
    assert keeper.release("job-1").lost.startswith("its lease could not be renewed for 1 s")


def test_a_worker_that_stopped_its_job_for_lack_of_redis_puts_it_back_itself_once_the_lease_lapses(redis):
    # It lives on (its key is fresh), so no other worker takes the lease back: it must give it up itself.
    # A lease of 4 s, so that a busy machine still reaches the first check before it lapses.
    worker, job = started(redis, lease=4)
    worker.heartbeat(60)  # the worker lives on (went on to its next job)
    [(job_id, execution_id)] = StartedJobRegistry("default", connection=redis).get_job_and_execution_ids(
        cleanup=False)
    keeper = LeaseKeeper(worker, 4)
    try:
        keeper.given_up.add(("default", f"{job_id}:{execution_id}"))
        keeper.give_up_lost()  # not lapsed yet: kept for the next tick
        assert keeper.given_up and job.get_status() == JobStatus.STARTED
        wait_until(lambda: leases.lapsed_entries(redis, "default"), timeout=8, what="the lease to lapse")
        assert leases.recover_abandoned(redis, ["default"]) == {}  # others leave a live worker's lease alone
        keeper.give_up_lost()
        assert not keeper.given_up and job.get_status() == JobStatus.QUEUED
        assert Queue("default", connection=redis).job_ids == [job.id]
    finally:
        keeper.stop()
