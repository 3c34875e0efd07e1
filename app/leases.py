"""Job leases: a killed worker's job runs again within seconds, and never twice at the same moment.

rq marks a running job in its queue's ``StartedJobRegistry``, a sorted set of ``job_id:execution_id``
entries scored by the time the entry expires, and takes back the jobs whose entry has expired: its
workers do that every ten minutes, and rq's ``SimpleWorker`` (which runs the job in its own process,
see ``workers/__main__.py``) sets the expiry to the job's timeout plus a minute and never renews it.
So a worker killed mid-job (the OOM killer, a lost host) left its job "started" for up to ten
minutes, and everything keyed by that job id waited with it.

Here the entry's score is a **lease** of ``WORKER_LEASE_SECONDS`` (default 15), renewed every
quarter of that by the worker's lease keeper (``workers.worker``), and every worker's keeper takes
back lapsed leases on every tick:

- Renewing is a compare-and-set on Redis (``RENEW_SCRIPT``): a lease is extended only while it is
  still live, by Redis' own clock. Once lapsed it can never be renewed, only recovered.
- Recovering (``recover``) is one ``WATCH``/``MULTI`` transaction per entry: the entry is taken out of
  the registry and the job put back at the front of its queue (spending one of its retries, as rq
  does for an abandoned job; with none left it fails with ``AbandonedJobError``) together, or not at
  all. Two recoverers racing for one entry: one transaction commits, the other finds it gone.
- It only takes an entry whose lease has lapsed **and** whose worker is gone (its worker key expires
  with the lease; a worker that shut down has registered its death).
- A job id runs on one worker at a time whatever queued it: before running a job a worker claims its
  run (``claim_run``, a ``SET NX`` renewed with the lease), and a copy that finds the run claimed is
  dropped. rq itself can queue a job twice (its registry clean-up and its scheduler are not atomic).
- A worker that cannot renew (Redis unreachable) for half a lease stops the job itself, before the
  lease can lapse; one that finds its lease taken (a process frozen longer than the lease) stops it
  at once. Either way it leaves the job's records to the recoverer (``workers.worker``).

Scores are compared with Redis' ``TIME`` here; rq's own clean-up compares them with the client's clock.
The workers leave rq's started-registry clean-up out of their maintenance (``Worker.clean_registries``)
so that the two never race; ``rq info`` still runs it, which is harmless as long as the machines'
clocks agree to within a few seconds (it takes back only lapsed leases too, just not atomically).

rq 3.0's own private ``Queue._enqueue_job`` is what puts a job back (as ``Job.retry`` does for a retry
without delay); hence the ``rq`` pin in ``pyproject.toml``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.rate_limit import release_slot
from rq.registry import StartedJobRegistry
from rq.utils import now, parse_composite_key, utcformat
from rq.worker import BaseWorker

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 15
ABANDONED = "abandoned_at"  # job.meta: when a recoverer put the job back after its worker was lost
ABANDONED_BY = "abandoned_by"

# Extend a live lease by Redis' clock; a lapsed or missing one, or a run claimed by another worker, is
# never revived (0). With it, the worker's key (which says the worker is alive) and rq's execution
# records (which say which worker runs what).
# KEYS: started registry, worker key, execution key, the job's execution registry, the job's run claim
# ARGV: registry entry (job_id:execution_id), lease seconds, execution id, now (rq's format, for
#       display), worker name
RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now or redis.call('GET', KEYS[5]) ~= ARGV[5] then
    return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[5], lease * 1000)
if redis.call('EXPIRE', KEYS[2], lease) == 1 then
    redis.call('HSET', KEYS[2], 'last_heartbeat', ARGV[4])
end
if redis.call('EXPIRE', KEYS[3], lease + 60) == 1 then
    redis.call('HSET', KEYS[3], 'last_heartbeat', now)
end
redis.call('ZADD', KEYS[4], 'XX', now + lease + 60, ARGV[3])
redis.call('EXPIRE', KEYS[4], lease + 120)
return 1
"""
# Give a run claim back, if it is still this worker's. KEYS: the claim. ARGV: worker name.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def run_key(job_id: str) -> str:
    """The job's run claim: which worker runs it now. Only one can hold it (``claim_run``)."""
    return f"oncecode:running:{job_id}"


def claim_run(redis: Redis, job_id: str, worker_name: str, seconds: int) -> bool:
    """Claim the job's run for one lease; False when another worker runs it (a copy queued twice)."""
    return bool(redis.set(run_key(job_id), worker_name, nx=True, px=seconds * 1000))


def release_run(redis: Redis, job_id: str, worker_name: str) -> None:
    """Give the job's run claim back, unless it is no longer this worker's."""
    redis.register_script(RELEASE_SCRIPT)(keys=[run_key(job_id)], args=[worker_name])


@dataclass(frozen=True)
class Lease:
    """One execution's lease: the ``StartedJobRegistry`` entry of a job a worker runs."""

    queue: str
    job_id: str
    execution_id: str
    worker_name: str

    @property
    def entry(self) -> str:
        return f"{self.job_id}:{self.execution_id}"

    def renew(self, redis: Redis, seconds: int) -> bool:
        """Extend the lease by ``seconds`` from now; False when it has lapsed or been taken back."""
        execution = Execution(self.execution_id, self.job_id, connection=redis)
        keys = [started_key(self.queue), BaseWorker.redis_worker_namespace_prefix + self.worker_name, execution.key,
                ExecutionRegistry(self.job_id, connection=redis).key, run_key(self.job_id)]
        return bool(redis.register_script(RENEW_SCRIPT)(
            keys=keys, args=[self.entry, seconds, self.execution_id, utcformat(now()), self.worker_name]))


def started_key(queue: str) -> str:
    """The Redis key of the queue's ``StartedJobRegistry``."""
    return StartedJobRegistry.key_template.format(queue)


def server_time(redis: Redis | Pipeline) -> float:
    seconds, micros = redis.time()
    return seconds + micros / 1_000_000


def lapsed_entries(redis: Redis, queue: str, limit: int = 100) -> list[str]:
    """Entries of the queue's started registry whose lease has lapsed, oldest first."""
    key = started_key(queue)
    return [entry.decode() if isinstance(entry, bytes) else entry
            for entry in redis.zrangebyscore(key, "-inf", f"({server_time(redis)}", start=0, num=limit)]


def worker_alive(redis: Redis | Pipeline, worker_name: str | None) -> bool:
    """Whether the named worker still heartbeats (its key lives) and has not registered its death."""
    if not worker_name:
        return False
    key = BaseWorker.redis_worker_namespace_prefix + worker_name
    return bool(redis.exists(key)) and not redis.hexists(key, "death")


def recover(redis: Redis, queue: str, entry: str, *, by_its_worker: bool = False) -> str | None:
    """Take back one lapsed lease: put its job back at the front of its queue, or fail it.

    Returns ``"requeued"``, ``"failed"`` (no retry left), ``"dropped"`` (a leftover entry whose job is
    gone or no longer started), or ``None`` when the lease is live, its worker alive, or another
    recoverer was first. Safe to run concurrently anywhere: the entry leaves the registry in the same
    transaction that requeues the job, and only if nobody renewed or removed it meanwhile.
    ``by_its_worker``: the worker that held the lease gives it up itself (it stopped the job when it
    could not renew), so that its being alive does not keep the job from running again.
    """
    key = started_key(queue)
    job_id, execution_id = parse_composite_key(entry)
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                score = pipe.zscore(key, entry)
                if score is None or score > server_time(pipe):
                    return None
                try:
                    job: Job | None = Job.fetch(job_id, connection=redis)
                except NoSuchJobError:
                    job = None
                worker_name = job.worker_name if job is not None else None
                if worker_name and not by_its_worker:
                    pipe.watch(BaseWorker.redis_worker_namespace_prefix + worker_name)
                    if worker_alive(pipe, worker_name):
                        log.warning("job lease lapsed but its worker is alive; left alone",
                                    extra={"job_id": job_id, "status": worker_name})
                        return None
                pipe.watch(run_key(job_id))
                claimed_by = pipe.get(run_key(job_id))
                pipe.multi()
                pipe.zrem(key, entry)
                if claimed_by is not None and claimed_by.decode() == worker_name:
                    pipe.delete(run_key(job_id))
                _forget_execution(pipe, job_id, execution_id, worker_name)
                outcome = "dropped"
                if job is not None and job.get_status(refresh=False) == JobStatus.STARTED:
                    outcome = _take_back(pipe, job, Queue(queue, connection=redis), worker_name)
                pipe.execute()
                break
            except WatchError:
                continue
    if job is not None and outcome != "dropped":
        release_slot(job)  # only once failed: a requeued job keeps its rate-limit slot, as on rq's retry
        log.warning("abandoned job taken back from a lost worker",
                    extra={"job_id": job_id, "status": f"{outcome}, {job.retries_left or 0} retries left",
                           "reason": f"worker {worker_name} gone"})
    return outcome


def _forget_execution(pipe: Pipeline, job_id: str, execution_id: str, worker_name: str | None) -> None:
    """The dead execution's records, so that nothing counts it as running any more (rate limits do)."""
    entry = f"{job_id}:{execution_id}"
    pipe.delete(Execution(execution_id, job_id, connection=pipe).key)  # type: ignore[arg-type]
    pipe.zrem(ExecutionRegistry(job_id, connection=pipe).key, execution_id)  # type: ignore[arg-type]
    if worker_name:
        pipe.srem(WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker_name), entry)


def _take_back(pipe: Pipeline, job: Job, queue: Queue, worker_name: str | None) -> str:
    """Queue the job again at once (its worker died: back-off would only delay it), or fail it.

    A retry is spent either way, as rq does for an abandoned job, so a job that kills its worker every
    time (one that runs out of memory, say) ends failed instead of looping.
    """
    job.meta[ABANDONED] = utcformat(now())
    job.meta[ABANDONED_BY] = worker_name or ""
    job.started_at = job.ended_at = None
    if job.retries_left:
        job.retries_left -= 1
        queue._enqueue_job(job, pipeline=pipe, at_front=True)
        return "requeued"
    record_job_failure(job, f"AbandonedJobError: its worker {worker_name} was lost mid-job (lease lapsed)", pipe)
    return "failed"


def recover_abandoned(redis: Redis, queues: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Take back every lapsed lease of these queues (a worker's lease keeper calls it on every tick)."""
    done: dict[str, int] = {}
    for queue in queues:
        for entry in lapsed_entries(redis, queue):
            outcome = recover(redis, queue, entry)
            if outcome is not None:
                done[outcome] = done.get(outcome, 0) + 1
    return done


def job_leases(redis: Redis, job: Job) -> list[tuple[str, float]]:
    """The job's entries in its queue's started registry, with their scores (lease expiries)."""
    key = started_key(job.origin)
    pattern = "".join(f"[{c}]" if c in "*?[]\\" else c for c in job.id) + ":*"
    return [(entry.decode() if isinstance(entry, bytes) else entry, score)
            for entry, score in redis.zscan_iter(key, match=pattern)]


def abandoned(redis: Redis, job: Job) -> bool:
    """Whether a started job has lost its worker: no live lease left and its worker gone, which is
    when ``recover`` takes it back."""
    leases = job_leases(redis, job)
    if leases and max(score for _, score in leases) > server_time(redis):
        return False
    return not worker_alive(redis, job.worker_name)


def recover_job(redis: Redis, job: Job) -> str | None:
    """Take back the job now if its lease has lapsed (``recover``'s outcome for it), else None."""
    outcome = None
    for entry, _ in job_leases(redis, job):
        outcome = recover(redis, job.origin, entry) or outcome
    return outcome
