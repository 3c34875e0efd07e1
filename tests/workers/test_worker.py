"""OnceCode's rq worker shuts down at once, however its pub/sub thread and the shutdown interleave."""

from __future__ import annotations

import time

from app.queues import QUEUES
from tests.e2e.harness import wait_until
from workers.worker import Worker


def test_shutdown_does_not_wait_for_the_pubsub_thread_that_already_saw_its_unsubscribe(redis):
    # The interleaving a busy machine produces: the thread handles the UNSUBSCRIBE reply before the
    # worker stops it, and goes back to a 60 s wait. rq's own shutdown then waits out the minute.
    worker = Worker(list(QUEUES), connection=redis)
    worker.subscribe()
    worker.pubsub.unsubscribe()
    wait_until(lambda: not worker.pubsub.subscribed, timeout=5, what="the thread to handle UNSUBSCRIBE")
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 3

