"""Keeping the metrics' daily tallies current, scheduled by ``rq cron`` (see ``workers/cron.py``)."""

from __future__ import annotations

import logging
from typing import Any

from app import runtime
from app.codes import tallies

log = logging.getLogger(__name__)


def fold_tallies() -> dict[str, Any]:
    """Fold the changes the triggers recorded into the shops' days, rebuilding first the shops whose store
    time zone changed (rq cron runs this every minute; ``app.codes.tallies``).

    Safe to run twice or concurrently: a second run finds the lock held and skips, and a fold moves each
    change once (it is deleted in the transaction that adds it to its day).
    """
    result = tallies.fold_changes(runtime.current().db)
    if result["rebuilt"] or result["failed"]:
        log.info("tallies rebuilt", extra={"status": f"{result['rebuilt']} rebuilt, {len(result['failed'])} failed"})
    return result
