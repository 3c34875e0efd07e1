"""The rq worker class OnceCode runs: rq's ``SimpleWorker`` with job leases and a shutdown that cannot stall.

**Leases** (see ``app/leases.py`` for the protocol). A job's entry in rq's ``StartedJobRegistry``
expires ``lease_seconds`` (``WORKER_LEASE_SECONDS``, default 15) after it was last renewed instead of
the job's timeout plus a minute, and so does the worker's own key while it runs a job. The worker's
lease keeper, a thread, renews the running job's lease every quarter of that and, on the same tick,
takes back the lapsed leases of every queue the worker serves: a worker killed mid-job has its job
back at the front of its queue about a lease after the kill, taken by whichever worker is free.

A worker that loses its lease stops the job: the keeper raises ``LeaseLost`` in it (a signal to the
main thread, as rq's own job timeout does), and the worker then leaves the job's records alone, since
they belong to the run the recoverer queued. That happens when the lease was taken back (the process
was frozen for longer than a lease) or when it could not be renewed for half a lease (Redis out of
reach), which is before anyone else can take it back; in that case the worker, which lives on (so
other workers leave its leases alone), puts the job back itself once the lease has lapsed. Before
running a job the worker claims its run (``app.leases.claim_run``): a copy of a job that another
worker runs right now is dropped, not run.

**The scheduler.** rq runs its scheduler (which moves deferred and retried jobs back to their queues)
in a process forked by one worker, under a lock that outlives a dead holder by 61 s and that other
workers try to take every ten minutes. The keeper takes over a lock silent for
``SCHEDULER_SILENT_SECONDS`` on its next tick, so a lost host delays scheduled jobs by seconds too.

**Shutdown.** rq 3.0 listens for commands on a pub/sub thread that blocks for up to 60 s between
messages, and on shutdown sends UNSUBSCRIBE and then stops the thread, relying on the reply to wake
it. When the thread handles that reply before its running flag is cleared (a busy machine makes it
likely), it goes back to waiting for a subscription for a full 60 s, and redis-py 8's ``stop()`` waits
for it: every burst worker in the test suite could stall a minute, and a deploy's warm shutdown too.
Clearing the flag first lets the reply end the thread at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import SimpleWorker, worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.rate_limit import RateLimitRegistry
from rq.scheduler import RQScheduler
from rq.utils import now

from app.leases import (
    ABANDONED,
    ABANDONED_BY,
    DEFAULT_LEASE_SECONDS,
    Lease,
    claim_run,
    recover,
    recover_abandoned,
    release_run,
    started_key,
)

log = logging.getLogger(__name__)

LEASE_SIGNAL = signal.SIGUSR1  # the keeper's word to the main thread: the running job's lease is lost
# rq's scheduler refreshes its locks every second (for 61 s each): one that has not for this long is dead.
SCHEDULER_SILENT_SECONDS = 15
# Delete a scheduler lock not refreshed for ARGV[2] ms. KEYS: the lock. ARGV: its full TTL (ms), the limit.
FREE_SILENT_LOCK_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 and tonumber(ARGV[1]) - ttl > tonumber(ARGV[2]) then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(BaseException):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """Raised in a job whose lease its worker lost. A ``BaseException``, so that a job's ``except
    Exception`` (which records failures) does not take it for the job's own failure."""


@dataclass
class Held:
    """The lease of the job the worker is running, as the keeper sees it."""

    lease: Lease
    renewed_at: float  # time.monotonic() when the last successful renewal was sent
    armed: bool = True  # LeaseLost may still be raised in the job (cleared once the job is over)
    lost: str | None = None  # why the lease was lost


class LeaseKeeper(threading.Thread):
    """Renews the running job's lease and takes back other workers' lapsed ones, every ``seconds / 4``."""

    def __init__(self, worker: Worker, seconds: int) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self.worker = worker
        self.seconds = seconds
        self.tick = seconds / 4
        # A connection of its own whose calls give up within the tick: a Redis that does not answer must
        # not keep the keeper from noticing that half the lease has gone by.
        self.redis = client(worker.connection, timeout=max(0.5, self.tick / 2))
        self.held: Held | None = None
        # Leases this worker lost while alive: its own key keeps other workers from taking them back,
        # so it gives them up itself once they have lapsed (Redis may not answer at first).
        self.given_up: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def hold(self, lease: Lease) -> None:
        with self.lock:
            self.held = Held(lease, renewed_at=time.monotonic())

    def release(self, job_id: str) -> Held | None:
        """Stop renewing the job's lease (it is over); what the keeper knew of it."""
        with self.lock:
            held = self.held
            if held is None or held.lease.job_id != job_id:
                return None
            held.armed = False
            self.held = None
            return held

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive():
            self.join(timeout=5)
        self.redis.close()

    def run(self) -> None:
        while not self.stopped.wait(self.tick):
            try:
                self.renew()
                self.give_up_lost()
                recover_abandoned(self.redis, self.worker.queue_names())
                self.keep_scheduler()
            except RedisError as exc:
                log.warning("lease keeper: Redis unavailable", extra={"reason": type(exc).__name__})
            except Exception:  # the keeper must outlive any surprise, or leases would lapse under live jobs
                log.exception("lease keeper failed a tick")

    def renew(self) -> None:
        held = self.held
        if held is None or held.lost:
            return
        sent = time.monotonic()
        try:
            renewed = held.lease.renew(self.redis, self.seconds)
        except RedisError as exc:
            # Stop the job well before the lease can lapse: nobody can take it back before then.
            if time.monotonic() - held.renewed_at > self.seconds / 2:
                self.lose(held, f"its lease could not be renewed for {self.seconds / 2:g} s "
                                f"({type(exc).__name__})")
            raise
        if renewed:
            held.renewed_at = sent
        else:
            self.lose(held, "its lease lapsed and was taken back (the worker was frozen or cut off)")

    def keep_scheduler(self) -> None:
        """Become the scheduler (rq's, which moves scheduled jobs to their queues) when none is alive.

        rq's scheduler lock lives 61 s after its holder's last refresh, and rq's workers try to take it
        every ten minutes: a lost host that ran the scheduler held every deferral and back-off retry for
        that long. Here a lock silent for ``SCHEDULER_SILENT_SECONDS`` is freed and taken on the next tick.
        """
        scheduler = self.worker.scheduler
        if scheduler is None or self.worker.burst or (scheduler._process is not None and scheduler._process.is_alive()):
            return
        full_ttl = (scheduler.interval + 60) * 1000
        for name in self.worker.queue_names():
            lock = RQScheduler.get_locking_key(name)
            if self.redis.register_script(FREE_SILENT_LOCK_SCRIPT)(
                    keys=[lock], args=[full_ttl, SCHEDULER_SILENT_SECONDS * 1000]):
                log.warning("a silent scheduler's lock freed", extra={"status": name})
        process = scheduler._process
        scheduler.acquire_locks(auto_start=True)
        if scheduler._process is not process:
            # Until the new scheduler handles SIGTERM itself it has this worker's handlers, which would
            # leave it running when the worker stops it: wait for it to be started properly.
            deadline = time.monotonic() + 5
            while not self.redis.exists(scheduler.key) and time.monotonic() < deadline:
                time.sleep(0.05)

    def give_up_lost(self) -> None:
        """Put the jobs of the leases this worker lost back in their queues, once the leases have lapsed."""
        for queue, entry in list(self.given_up):
            if recover(self.redis, queue, entry, by_its_worker=True) is not None or \
                    self.redis.zscore(started_key(queue), entry) is None:
                self.given_up.discard((queue, entry))

    def lose(self, held: Held, reason: str) -> None:
        with self.lock:
            if self.held is not held or not held.armed:
                return  # the job is over already
            held.lost = reason
            self.given_up.add((held.lease.queue, held.lease.entry))
        log.error("job lease lost: the job is stopped here and left to the run its recoverer queued",
                  extra={"job_id": held.lease.job_id, "reason": reason})
        signal.pthread_kill(threading.main_thread().ident, LEASE_SIGNAL)  # type: ignore[arg-type]


def client(connection: Redis, timeout: float) -> Redis:
    """A connection like ``connection`` whose calls fail within ``timeout``, once: the keeper's next tick
    is its retry, and it must see the time pass."""
    pool = connection.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": timeout, "socket_connect_timeout": timeout,
              "retry": Retry(NoBackoff(), 0)}
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


class Worker(SimpleWorker):
    def __init__(self, *args: Any, lease_seconds: int = DEFAULT_LEASE_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lease_seconds = lease_seconds
        self.keeper: LeaseKeeper | None = None
        self.burst = False

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        self.burst = burst  # a burst worker schedules once, at its start (rq), and is never the scheduler
        return super().work(burst, *args, **kwargs)

    # -- the keeper's life --

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        self.keeper = LeaseKeeper(self, self.lease_seconds)
        self.keeper.start()

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        signal.signal(LEASE_SIGNAL, self._on_lease_lost)

    def _on_lease_lost(self, signum: int, frame: FrameType | None) -> None:
        held = self.keeper.held if self.keeper is not None else None
        if held is not None and held.lost and held.armed:
            held.armed = False  # once: the job's clean-up must not be interrupted again
            raise LeaseLost(held.lost)

    def teardown(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
            self.keeper = None
        super().teardown()

    # -- a job's lease --

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job unless another worker runs it right now (a copy of it was queued twice)."""
        if not claim_run(self.connection, job.id, self.name, self.lease_seconds):
            log.warning("job already running on another worker: this copy is dropped", extra={"job_id": job.id})
            return
        try:
            super().execute_job(job, queue)
        finally:  # however the job ended, its lease is not renewed any more
            if self.keeper is not None:
                self.keeper.release(job.id)
            release_run(self.connection, job.id, self.name)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """How long the job's registry entry and this worker's key live unless renewed: one lease."""
        return self.lease_seconds

    def prepare_execution(self, job: Job) -> Execution:
        self.heartbeat(self.lease_seconds)  # from here on this worker's key lives no longer than the lease
        execution = super().prepare_execution(job)
        if self.keeper is not None:
            self.keeper.hold(Lease(job.origin, job.id, execution.id, self.name))
        if ABANDONED in job.meta:  # it runs again: no longer "recovering"
            job.meta.pop(ABANDONED)
            job.meta.pop(ABANDONED_BY, None)
            job.save_meta()
        return execution

    def _may_record(self, job: Job, execution: Execution | None) -> bool:
        """Stop renewing the job's lease; whether this worker still holds it and may record the outcome."""
        held = self.keeper.release(job.id) if self.keeper is not None else None
        if held is None or held.lost is None:
            # Before the outcome is recorded: recording may queue the job again (a retry, a turn given
            # back), and its next run must find the claim free.
            release_run(self.connection, job.id, self.name)
            return True
        if execution is not None:
            self.executions.pop(execution.id, None)
        log.error("job stopped after losing its lease; its outcome here is not recorded",
                  extra={"job_id": job.id, "reason": held.lost})
        return False

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any, execution: Execution) -> None:
        if self._may_record(job, execution):
            super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_retry(self, job: Job, queue: Queue, retry: Any, started_job_registry: Any,
                         execution: Execution) -> None:
        if self._may_record(job, execution):
            super().handle_job_retry(job, queue, retry, started_job_registry, execution)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = "",
                           execution: Execution | None = None) -> None:
        if self._may_record(job, execution):
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    # -- maintenance --

    def run_maintenance_tasks(self) -> None:
        """rq's, except that the lease keeper, not this loop, restarts the scheduler (on every tick)."""
        self.clean_registries()
        self.clean_group_registries()

    def clean_registries(self) -> None:
        """rq's registry maintenance, with the started registries left to ``app.leases``.

        rq's ``StartedJobRegistry.cleanup`` takes back expired entries without a transaction, so it could
        race a lease keeper for the same entry and queue a job twice; the keepers' recovery is atomic.
        """
        recover_abandoned(self.connection, self.queue_names())
        for queue in self.queues:
            if not queue.acquire_maintenance_lock():
                continue  # another worker is at it
            try:
                for registry in (queue.finished_job_registry, queue.failed_job_registry,
                                 queue.deferred_job_registry, queue.ready_job_registry):
                    registry.cleanup()
                for rate_limit in RateLimitRegistry.all(queue.connection):
                    rate_limit.cleanup()
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
            finally:
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if thread is None:
            return
        thread.stop(timeout=0)  # clear the running flag only; the UNSUBSCRIBE reply wakes the thread
        self.pubsub.unsubscribe()
        thread.join(timeout=1)
        self.pubsub.close()
