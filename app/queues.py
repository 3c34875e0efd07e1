"""The one place the web side touches rq: which job handles what, on which queue, with what retries.

Job functions are named by import path (strings), so the web process never imports the workers,
and those paths are a contract while jobs sit in a queue: rename a job only with a shim.

Jobs that call a shop's Admin API go through ``enqueue_for_shop``: rq's ``RateLimit`` lets at most
``SHOP_JOB_CONCURRENCY`` of one shop's jobs be queued or running at once and keeps the rest in its
rate-limit registry, so a flood from one shop cannot line up ahead of every other shop's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, RateLimit, Retry
from rq.exceptions import NoSuchJobError
from rq.job import JOB_ID_PATTERN, Job, JobStatus

from app import leases, runtime
from app.shopify.webhooks import COMPLIANCE_TOPICS

log = logging.getLogger(__name__)

# The queues a worker takes turns on (round robin, see workers/__main__.py): webhook events, work
# for the Admin API (install, codes), periodic maintenance.
QUEUES = ("webhooks", "default", "maintenance")

WEBHOOK_JOBS = {
    "app/uninstalled": "workers.webhooks.handle_app_uninstalled",
    "customers/create": "workers.webhooks.handle_customers_create",
    "customers/data_request": "workers.webhooks.handle_customers_data_request",
    "customers/redact": "workers.webhooks.handle_customers_redact",
    "orders/cancelled": "workers.webhooks.handle_orders_cancelled",
    "orders/paid": "workers.webhooks.handle_orders_paid",
    "refunds/create": "workers.webhooks.handle_refunds_create",
    "shop/redact": "workers.webhooks.handle_shop_redact",
}
# COMPLIANCE_TOPICS can only be subscribed in shopify.app.toml; the rest we register per shop at install.
SUBSCRIBED_TOPICS = tuple(t for t in WEBHOOK_JOBS if t not in COMPLIANCE_TOPICS)


def topics_key() -> str:
    """``SUBSCRIBED_TOPICS`` as a shop's setup records them (``Shop.webhook_topics``): sorted, comma-separated."""
    return ",".join(sorted(SUBSCRIBED_TOPICS))

# Back-off for transient failures (seconds): about 2 h in all, then the event is marked failed.
WEBHOOK_RETRY = Retry(max=8, interval=[5, 15, 60, 120, 300, 600, 1800, 3600])
SETUP_RETRY = Retry(max=6, interval=[10, 30, 60, 300, 900, 3600])
ISSUE_RETRY = Retry(max=8, interval=[5, 15, 60, 120, 300, 600, 1800, 3600])
# An issuing job gives its worker back every 20 s (workers/codes.py): two minutes is a stuck job. A
# worker that died mid-job does not wait for this: its lease lapses within seconds (app/leases.py).
ISSUE_TIMEOUT = 120
# Webhook jobs are database work of milliseconds: a few per shop keep every worker busy, and the
# limit is what interleaves shops in the webhooks queue. One figure for every enqueuer (rq keeps it per key).
WEBHOOK_JOBS_PER_SHOP = 4
KEEP_RESULT = 3600  # seconds a finished job's record stays (job ids double as de-duplication keys)
KEEP_FAILURE = 30 * 24 * 3600
ENQUEUE_CLAIM_SECONDS = 30  # how long one enqueuer holds a job id while it checks and enqueues


def job_id_for_event(event_id: str) -> str:
    """The event id itself when rq accepts it as a job id (Shopify's are UUIDs), else a digest of it."""
    if len(event_id) <= 128 and JOB_ID_PATTERN.fullmatch(event_id):
        return event_id
    return "event-" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def webhook_rate_limit(shop: str) -> RateLimit:
    """At most ``WEBHOOK_JOBS_PER_SHOP`` of one shop's webhook jobs queued or running; the rest wait their turn."""
    return RateLimit(key=f"webhooks:{shop}", concurrency=WEBHOOK_JOBS_PER_SHOP)


def enqueue_event(redis: Redis, event_id: str, topic: str, shop: str) -> bool:
    """Queue the topic's job for a recorded event. False when Redis is unreachable.

    Each event is queued once: the web process only when its insert created the row, the sweep and
    ``flask events retry`` only when no live job has the id (see ``requeue``). rq refuses
    ``unique=True`` with a rate limit, and the inbox's unique event id already does that work. A
    shop's events wait in its rate-limit registry beyond ``WEBHOOK_JOBS_PER_SHOP``, so a flood of
    one shop's webhooks (a customer import, say) does not queue ahead of every other shop's.

    Never raises for Redis trouble: the event is safe in the database and the stranded-event sweep
    enqueues it once Redis answers again.
    """
    try:
        Queue("webhooks", connection=redis).enqueue(
            WEBHOOK_JOBS[topic], event_id, job_id=job_id_for_event(event_id), rate_limit=webhook_rate_limit(shop),
            retry=WEBHOOK_RETRY, job_timeout=120, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE,
            description=f"{topic} {event_id}",
        )
    except RedisError as exc:
        log.warning("event not enqueued, Redis unavailable; the sweep will retry",
                    extra={"event_id": event_id, "topic": topic, "reason": type(exc).__name__})
        return False
    return True


def setup_job_id(shop_id: int, installed_at: datetime) -> str:
    # Milliseconds: a reinstall right after a finished setup must get a job id of its own.
    return f"setup-{shop_id}-{int(installed_at.timestamp() * 1000)}"


def resubscribe_job_id(shop_id: int, installed_at: datetime) -> str:
    """The setup run again for new topics: once per install and set of topics."""
    digest = hashlib.sha256(topics_key().encode()).hexdigest()[:12]
    return f"{setup_job_id(shop_id, installed_at)}-topics-{digest}"


def enqueue_setup(redis: Redis, shop_id: int, installed_at: datetime, job_id: str | None = None) -> bool:
    """Queue post-install work (webhook subscriptions, default programs) once per install (or ``job_id``)."""
    try:
        return enqueue_for_shop(
            redis, "default", "workers.install.set_up_shop", shop_id,
            job_id=job_id or setup_job_id(shop_id, installed_at),
            retry=SETUP_RETRY, job_timeout=300, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE,
        )
    except RedisError as exc:
        log.warning("shop setup not enqueued, Redis unavailable; the sweep will retry",
                    extra={"shop_id": shop_id, "reason": type(exc).__name__})
        return False


def issue_job_id(shop_id: int, slot: int) -> str:
    return f"issue-{shop_id}-{slot}"


def revoke_job_id(code_id: int) -> str:
    return f"revoke-{code_id}"


def enqueue_issuance(redis: Redis, shop_id: int) -> bool:
    """Make sure an issuing job will take up the shop's pending codes; True if one was queued now.

    A shop has ``SHOP_JOB_CONCURRENCY`` issuing slots, each one rq job id (``issue-<shop>-<slot>``)
    that claims batches of pending codes until none is left (``workers.codes.issue_codes``). A slot
    whose job is waiting (queued, scheduled, rate-limited) will see a code reserved now; one whose job
    is running claims until nothing is pending. So: queue a free slot unless one is waiting already.
    False also when Redis is unreachable; the stranded-code sweep catches that.
    """
    try:
        for slot in range(runtime.current().settings.shop_job_concurrency):
            job_id = issue_job_id(shop_id, slot)
            status = job_status(redis, job_id)
            if status in LIVE_JOB_STATES - {JobStatus.STARTED}:
                return False  # waiting to run: it will find the code
            if status == JobStatus.STARTED:
                continue  # running: it may be about to finish, so make sure of another slot
            delete_job(redis, job_id)  # a finished or failed record frees the slot
            return enqueue_for_shop(redis, "default", "workers.codes.issue_codes", shop_id, slot, job_id=job_id,
                                    retry=ISSUE_RETRY, job_timeout=ISSUE_TIMEOUT, result_ttl=0,
                                    failure_ttl=KEEP_FAILURE)
    except RedisError as exc:
        log.warning("issuance not enqueued, Redis unavailable; the sweep will retry",
                    extra={"shop_id": shop_id, "reason": type(exc).__name__})
    return False


def enqueue_revoke(redis: Redis, shop_id: int, code_id: int) -> bool:
    """Queue the deactivation on the store of a code marked revoked."""
    try:
        return enqueue_for_shop(redis, "default", "workers.codes.revoke_code", shop_id, code_id,
                                job_id=revoke_job_id(code_id), retry=ISSUE_RETRY, job_timeout=300,
                                result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE)
    except RedisError as exc:
        log.warning("revocation not enqueued, Redis unavailable; the sweep will retry",
                    extra={"shop_id": shop_id, "code_id": code_id, "reason": type(exc).__name__})
        return False


def catch_up_job_id(shop_id: int) -> str:
    return f"catch-up-{shop_id}"


def enqueue_catch_up(redis: Redis, shop_id: int) -> bool:
    """Queue catch-up reconciliation for the shop unless it is queued or running; True if queued now.

    Raises ``RedisError`` for the caller to report: the schedule simply tries again next minute.
    """
    return requeue(redis, catch_up_job_id(shop_id), lambda: enqueue_for_shop(
        redis, "default", "workers.reconcile.reconcile_orders", shop_id, job_id=catch_up_job_id(shop_id),
        retry=ISSUE_RETRY, job_timeout=ISSUE_TIMEOUT, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE))


def cleanup_job_id(shop_id: int) -> str:
    return f"store-cleanup-{shop_id}"


def enqueue_cleanup(redis: Redis, shop_id: int) -> bool:
    """Queue the store clean-up for the shop unless it is queued or running; True if queued now.

    Raises ``RedisError`` for the caller to report: the schedule simply tries again next hour.
    """
    return requeue(redis, cleanup_job_id(shop_id), lambda: enqueue_for_shop(
        redis, "default", "workers.cleanup.clean_up_store", shop_id, job_id=cleanup_job_id(shop_id),
        retry=ISSUE_RETRY, job_timeout=ISSUE_TIMEOUT, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE))


def shop_rate_limit(shop_id: int) -> RateLimit:
    """rq's concurrency limit for one shop's Admin API jobs (``SHOP_JOB_CONCURRENCY``, default 2).

    Every enqueuer must use the same figure: rq stores it per key and the last enqueue wins.
    """
    return RateLimit(key=f"shop:{shop_id}", concurrency=runtime.current().settings.shop_job_concurrency)


def enqueue_for_shop(redis: Redis, queue: str, func: str, shop_id: int, *args: object, job_id: str,
                     **options: object) -> bool:
    """Queue ``func(shop_id, *args)`` under the shop's rate limit, once per ``job_id``. False if it exists.

    rq 3 refuses ``unique=True`` on a rate-limited job (``Queue.enqueue_job``), so de-duplication is
    done here: a short ``SET NX`` claim on the id lets one enqueuer at a time check that no job with
    that id exists and enqueue it. The job hash then keeps the id taken for as long as ``unique=True``
    would have (queued, scheduled, rate-limited, or finished/failed until its result expires).
    """
    claim = f"oncecode:enqueue:{job_id}"
    if not redis.set(claim, "1", nx=True, ex=ENQUEUE_CLAIM_SECONDS):
        return False  # another process is enqueuing this very job right now
    try:
        if Job.exists(job_id, connection=redis):
            return False
        Queue(queue, connection=redis).enqueue(func, shop_id, *args, job_id=job_id,
                                               rate_limit=shop_rate_limit(shop_id), **options)
    finally:
        redis.delete(claim)
    return True


# A job in one of these states will still run: enqueueing its id again would be a duplicate.
LIVE_JOB_STATES = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED,
                             JobStatus.RATE_LIMITED})


def job_status(redis: Redis, job_id: str) -> JobStatus | None:
    """The status of the job with this id, or None when there is none."""
    try:
        return Job.fetch(job_id, connection=redis).get_status(refresh=False)
    except NoSuchJobError:
        return None


def job_state(redis: Redis, job_id: str) -> str | None:
    """What the job is doing, as the API and the CLI show it: rq's status (``queued``, ``started``,
    ``scheduled``, ``finished``, ``failed``, …) or None when there is none, except that

    - a started job whose worker is gone (its lease lapsed, ``app.leases``) is ``abandoned`` until a
      worker's lease keeper takes it back, which is within a few seconds, and
    - a job taken back that way is ``recovering`` until a worker starts it again.
    """
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    if status == JobStatus.STARTED:
        return "abandoned" if leases.abandoned(redis, job) else status.value
    if leases.ABANDONED in job.meta and status in LIVE_JOB_STATES:
        return "recovering"
    return status.value if status is not None else None


def is_live(redis: Redis, job_id: str) -> bool:
    """Whether a job with this id is waiting or running (finished and failed ones are not)."""
    return job_status(redis, job_id) in LIVE_JOB_STATES


def requeue(redis: Redis, job_id: str, enqueue: Callable[[], bool]) -> bool:
    """Run ``enqueue`` unless the job is live; a finished or failed record of it is forgotten first.

    A started job whose worker is gone (``abandoned``) is taken back at once rather than waited for:
    True when that put it back in its queue.
    """
    try:
        job: Job | None = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        job = None
    if job is not None and job.get_status(refresh=False) == JobStatus.STARTED and leases.abandoned(redis, job):
        if leases.job_leases(redis, job):
            if leases.recover_job(redis, job) == "requeued":
                return True
        else:  # started, yet held by no worker at all: a record nothing will ever finish
            log.warning("job record started but held by no worker; replaced", extra={"job_id": job_id})
            delete_job(redis, job_id)
    if is_live(redis, job_id):
        return False
    delete_job(redis, job_id)
    return enqueue()


def delete_job(redis: Redis, job_id: str) -> None:
    """Forget a job record (finished or failed) so that the same id can be enqueued again."""
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=redis).delete()


def cancel_job(redis: Redis, job_id: str) -> None:
    """Take a job out of its queue if it is still waiting; a job already gone is fine."""
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED,
                                         JobStatus.RATE_LIMITED):
        job.cancel()


def referral_link_job_id(link_id: int, status: str) -> str:
    """One job id per change of a link (made, retired), so a change never waits on a job that ran for
    an earlier one."""
    return f"referral-link-{link_id}-{status}"


def enqueue_referral_link(redis: Redis, shop_id: int, link_id: int, status: str) -> bool:
    """Queue the job that writes a link to its customer's metafield (``status`` active) or takes it
    off (retired), unless that job is waiting or running. False also when Redis is unreachable: the
    stranded-link sweep catches that."""
    job_id = referral_link_job_id(link_id, status)
    try:
        return requeue(redis, job_id, lambda: enqueue_for_shop(
            redis, "default", "workers.referrals.sync_referral_link", shop_id, link_id, job_id=job_id,
            retry=ISSUE_RETRY, job_timeout=120, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE))
    except RedisError as exc:
        log.warning("referral link job not enqueued, Redis unavailable; the sweep will retry",
                    extra={"shop_id": shop_id, "link_id": link_id, "reason": type(exc).__name__})
        return False


def pool_top_up_job_id(shop_id: int, program_id: int) -> str:
    return f"pool-top-up-{shop_id}-{program_id}"


def enqueue_pool_top_up(redis: Redis, shop_id: int, program_id: int) -> bool:
    """Queue the top-up of a referral program's friend code pool unless it is queued or running; True if
    queued now. Raises ``RedisError`` for the caller to report (the sweep tries again next minute)."""
    job_id = pool_top_up_job_id(shop_id, program_id)
    return requeue(redis, job_id, lambda: enqueue_for_shop(
        redis, "default", "workers.pools.top_up_pool", shop_id, program_id, job_id=job_id,
        retry=ISSUE_RETRY, job_timeout=ISSUE_TIMEOUT, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE))


def pool_expiry_job_id(shop_id: int) -> str:
    return f"pool-expiry-{shop_id}"


def enqueue_pool_expiry(redis: Redis, shop_id: int) -> bool:
    """Queue the deletion of the shop's expired friend codes and ended pool discounts from its store
    unless it is queued or running; True if queued now. Raises ``RedisError`` for the caller."""
    return requeue(redis, pool_expiry_job_id(shop_id), lambda: enqueue_for_shop(
        redis, "default", "workers.pools.expire_pool_codes", shop_id, job_id=pool_expiry_job_id(shop_id),
        retry=ISSUE_RETRY, job_timeout=ISSUE_TIMEOUT, result_ttl=KEEP_RESULT, failure_ttl=KEEP_FAILURE))
