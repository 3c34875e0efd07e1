"""What a merchant does to a code, from any door (the JSON API, the admin pages, the CLI): the change recorded
and committed, then the job that carries it to the store queued. One place, so that the API and the
pages cannot drift apart on what follows a revoke, a retry or a code issued by hand.

Each is safe to repeat: the domain function is idempotent (``issuance``) and the queue helpers keep
one job id per purpose (``app.queues``), so a double click queues one job."""

from __future__ import annotations

from redis import Redis
from sqlalchemy.orm import Session

from app.codes import issuance
from app.errors import Conflict
from app.models import IssuedCode
from app.queues import enqueue_issuance, enqueue_revoke

ON_ITS_WAY = ("reserved", "created")


def issue(session: Session, redis: Redis, shop_id: int, program_id: int, shopify_customer_id: int,
          request_key: str | None) -> tuple[IssuedCode, bool]:
    """``issuance.issue_by_hand``, committed; the issuing job queued while the code is on its way.
    The same ``request_key`` twice answers the first code (``False``)."""
    row, new = issuance.issue_by_hand(session, shop_id, program_id, shopify_customer_id, request_key)
    session.commit()
    if row.status in ON_ITS_WAY:
        enqueue_issuance(redis, shop_id)
    return row, new


def revoke(session: Session, redis: Redis, shop_id: int, code_id: int) -> tuple[IssuedCode, bool, bool]:
    """``issuance.request_revoke``, committed; the deactivation queued unless it is done already.
    (the code, done already, a deactivation queued now — False when Redis did not take it: the sweep
    will). ``Conflict`` for a redeemed or expired code."""
    row = issuance.request_revoke(session, shop_id, code_id)
    session.commit()
    done = issuance.revoke_done(row)
    queued = not done and enqueue_revoke(redis, shop_id, row.id)
    return row, done, queued


def retry(session: Session, redis: Redis, shop_id: int, code_id: int, again_ok: bool = False) -> IssuedCode:
    """``issuance.request_retry``, committed, and the issuing job queued. ``Conflict`` for a code that
    has not failed, unless ``again_ok`` and the code is on its way already (a retry sent twice)."""
    try:
        row = issuance.request_retry(session, shop_id, code_id)
    except Conflict:
        session.rollback()
        row = issuance.get_code(session, shop_id, code_id)
        if not (again_ok and row.status in ON_ITS_WAY):
            raise
    session.commit()
    enqueue_issuance(redis, shop_id)
    return row
