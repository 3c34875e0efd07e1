"""``python -m workers``: an rq worker on OnceCode's queues, with rq's scheduler for retries.

The runtime (settings, database pool, Redis) is built here once, before rq forks a work horse per
job, so that jobs do not each pay for new connections.
"""

from __future__ import annotations

import argparse

from rq import Worker
from rq.worker import DequeueStrategy

from app import runtime
from app.config import ROOT
from app.queues import QUEUES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args()
    from dotenv import load_dotenv

    load_dotenv(ROOT / ".env")
    rt = runtime.current()
    worker = Worker(list(QUEUES), connection=rt.redis)
    # Round robin, not priority: a flood of one queue (a shop importing customers floods webhooks)
    # must not starve the others, issuance above all. Every queue's jobs are short.
    worker.work(with_scheduler=True, burst=args.burst, logging_level=rt.settings.log_level,
                dequeue_strategy=DequeueStrategy.ROUND_ROBIN)


if __name__ == "__main__":
    main()
