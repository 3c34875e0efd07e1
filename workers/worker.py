"""The rq worker class OnceCode runs: rq's ``SimpleWorker`` with a shutdown that cannot stall.

rq 3.0 listens for commands on a pub/sub thread that blocks for up to 60 s between messages, and on
shutdown sends UNSUBSCRIBE and then stops the thread, relying on the reply to wake it. When the
thread handles that reply before its running flag is cleared (a busy machine makes it likely), it
goes back to waiting for a subscription for a full 60 s, and redis-py 8's ``stop()`` waits for it:
every burst worker in the test suite could stall a minute, and a deploy's warm shutdown too.
Clearing the flag first lets the reply end the thread at once.
"""

from __future__ import annotations

from rq import SimpleWorker


class Worker(SimpleWorker):
    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if thread is None:
            return
        thread.stop(timeout=0)  # clear the running flag only; the UNSUBSCRIBE reply wakes the thread
        self.pubsub.unsubscribe()
        thread.join(timeout=1)
        self.pubsub.close()
