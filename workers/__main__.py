"""``python -m workers``: an rq worker on OnceCode's queues, with rq's scheduler for retries and deferrals.

The runtime (settings, database pool, Redis) is built once and jobs run in this process, one after
another (rq's ``SimpleWorker``): no work horse is forked per job. A forked horse starts cold, with
a new database connection, unconfigured mappers and an empty statement cache, and the issuance
benchmark measured that at 340 ms of CPU per code against 43 ms here. Job timeouts still apply
(rq's SIGALRM death penalty). A worker that dies mid-job has the job taken back by another worker's
lease keeper once its lease lapses (``WORKER_LEASE_SECONDS``, see ``workers.worker`` and
``app.leases``), and the codes it had claimed are taken up again (see ``app.codes.issuance``).
"""

from __future__ import annotations

import argparse

from rq.worker import DequeueStrategy

from app import runtime
from app.config import ROOT
from app.queues import QUEUES
from workers.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args()
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env")
    rt = runtime.current()
    worker = Worker(list(QUEUES), connection=rt.redis, lease_seconds=rt.settings.worker_lease_seconds)
    # Round robin, not priority: a flood of one queue (a shop importing customers floods webhooks)
    # must not starve the others, issuance above all. Every queue's jobs are short.
    worker.work(with_scheduler=True, burst=args.burst, logging_level=rt.settings.log_level,
                dequeue_strategy=DequeueStrategy.ROUND_ROBIN)


if __name__ == "__main__":
    main()
