"""Referral link jobs: write a customer's link to their ``referral_link`` metafield (or take a
retired one off), and the sweep that re-queues that work when its job was lost."""

from __future__ import annotations

import logging

from rq import Retry

from app import runtime
from app.codes import attachment, referrals, rewards
from app.queues import enqueue_issuance, enqueue_referral_link
from app.shopify.client import AccessDenied, AdminClient, Throttled
from app.shopify.tokens import ShopNotInstalled
from workers.codes import installed_shop
from workers.deferral import defer
from workers.events import final_attempt, is_transient

log = logging.getLogger(__name__)

# Shops installed before links existed have no definition for the metafield; the first link job of
# each shop creates it (``TAKEN`` when set-up did). Remembered in Redis: a lost flag costs one call.
DEFINITION_FLAG = "oncecode:definition:referral_link:{shop_id}"


def sync_referral_link(shop_id: int, link_id: int) -> str | Retry:
    """Make the link's customer show what their links say: the active link's URL in the
    ``referral_link`` metafield, or no metafield once none is active.

    Safe to run twice, concurrently, or in any order with the job of another change to the same
    customer: it sets the state read from the database (``metafieldsSet`` is an upsert, deleting a
    missing metafield is no error), reads again afterwards and repeats while something changed.
    Throttled: deferred until the shop's bucket has refilled, without holding a worker.
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"  # the sweep picks the link up again after a reinstall
    try:
        client = rt.admin_client(shop.id, shop.domain)
        _ensure_definition(rt.redis, client, shop.id)
        outcome = referrals.LinkWriter(rt.db, rt.settings, client, shop.id).sync(link_id)
    except (ShopNotInstalled, AccessDenied):
        return "shop not installed"  # uninstalled under us: the uninstall webhook is on its way
    except Throttled as exc:
        later = defer(exc, shop.domain)
        if later is not None:
            return later
        raise
    except Exception as exc:
        # Transient trouble is retried by rq; anything else, or the last retry, is recorded on the link
        # where the merchant sees it, so that the sweep does not queue it again and again.
        if not is_transient(exc) or final_attempt():
            referrals.record_failure(rt.db, shop.id, link_id, f"{type(exc).__name__}: {exc}")
            log.warning("referral link job failed", extra={"shop": shop.domain, "link_id": link_id,
                                                           "reason": str(exc)})
            if not is_transient(exc):
                return "failed"
        raise
    log.info("referral link synced", extra={"shop": shop.domain, "link_id": link_id, "status": outcome})
    return outcome


def _ensure_definition(redis, client: AdminClient, shop_id: int) -> None:  # type: ignore[no-untyped-def]
    flag = DEFINITION_FLAG.format(shop_id=shop_id)
    if redis.exists(flag):
        return
    attachment.create_definition(client, attachment.referral_link_definition())
    redis.set(flag, "1")


def requeue_stranded_links() -> int:
    """Queue the metafield job of links whose change (made, retired) never reached the customer:
    Redis was down at the time, a worker died, the shop was reinstalled since.

    Safe to run twice or concurrently: a job waiting or running is left alone, and the job itself
    is idempotent.
    """
    rt = runtime.current()
    with rt.db.session_scope() as session:
        found = referrals.stranded(session)
    queued = sum(enqueue_referral_link(rt.redis, shop_id, link_id, status) for shop_id, link_id, status in found)
    if queued:
        log.info("stranded referral links enqueued", extra={"status": f"{queued} queued"})
    return queued


MAX_RELEASE_ROUNDS = 50  # batches of rewards.RELEASE_BATCH one run decides per shop; the next run goes on


def release_rewards() -> dict[str, int]:
    """End the hold of every held referral whose hold has ended: reward it (the advocate's code is
    reserved, then issued by the shop's issuing jobs) or void it (rq cron, every minute).

    Calls no Admin API, so one run serves every shop. Safe to run twice or concurrently: each referral
    is decided from ``held`` under its row lock, and its reward has one idempotency key per order.
    """
    rt = runtime.current()
    total = rewards.Released()
    with rt.db.session_scope() as session:
        shop_ids = rewards.shops_with_due_referrals(session)
    for shop_id in shop_ids:
        reserved = 0
        for _ in range(MAX_RELEASE_ROUNDS):
            with rt.db.session_scope() as session:
                done = rewards.release_due(session, shop_id)
            total.rewarded += done.rewarded
            total.voided += done.voided
            reserved += done.reserved
            if done.rewarded + done.voided < rewards.RELEASE_BATCH:
                break
        if reserved:
            enqueue_issuance(rt.redis, shop_id)
        total.reserved += reserved
    if total.rewarded or total.voided:
        log.info("referral holds ended", extra={"status": f"{total.rewarded} rewarded, {total.voided} voided"})
    return total.as_dict()
