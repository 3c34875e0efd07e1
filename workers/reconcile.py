"""Reconciliation jobs: catch-up over a shop's orders, and the expiry sweep."""

from __future__ import annotations

import logging
import time
from collections import Counter

from rq import Retry

from app import runtime
from app.codes import catch_up, expiry
from app.db import utcnow
from app.models import Shop
from app.queues import enqueue_catch_up, enqueue_issuance
from app.shopify.client import AccessDenied, Throttled
from app.shopify.tokens import ShopNotInstalled
from workers.codes import MAX_RETURNS, TURN_SECONDS, installed_shop
from workers.deferral import defer

log = logging.getLogger(__name__)


def reconcile_orders(shop_id: int) -> str | Retry:
    """Catch-up reconciliation for one shop: read its orders updated since the cursor, page by page.

    Gives its worker back every ``TURN_SECONDS`` and is deferred while the shop's bucket is empty;
    either way the same job continues from the committed cursor. Safe to run twice or concurrently:
    a page is applied only if the cursor has not moved since it was asked for, and reconciling an
    order again changes nothing.
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"
    domain = shop.domain
    done: Counter[str] = Counter()
    started = time.monotonic()
    try:
        walk = catch_up.CatchUp(rt.db, rt.admin_client(shop_id, domain), shop_id,
                                email_key=rt.settings.email_hash_key)
        while True:
            page = walk.page()
            if page.rewards:
                enqueue_issuance(rt.redis, shop_id)
            done.update(pages=1, orders=page.orders, recovered=page.recovered, redeemed=page.redeemed,
                        cancellations=page.cancellations)
            if page.finished:
                break
            if time.monotonic() - started > TURN_SECONDS:
                log.info("catch-up turn given back", extra={"shop": domain, "status": _summary(done)})
                return Retry(max=MAX_RETURNS, interval=0)
    except ShopNotInstalled:
        return "shop not installed"
    except AccessDenied as exc:  # revoked under us: the uninstall webhook is on its way
        catch_up.record_error(rt.db, shop_id, f"the store refused our access token: {exc}")
        return "store refused the token"
    except Throttled as exc:
        later = defer(exc, domain, limit=MAX_RETURNS)
        if later is not None:
            return later
        raise
    except Exception as exc:
        catch_up.record_error(rt.db, shop_id, f"{type(exc).__name__}: {exc}")
        raise
    log.info("catch-up complete", extra={"shop": domain, "status": _summary(done)})
    return _summary(done)


def _summary(done: Counter[str]) -> str:
    cancelled = f", {done['cancellations']} cancellations missed by webhooks" if done["cancellations"] else ""
    return (f"{done['pages']} pages, {done['orders']} orders read, {done['recovered']} missed by webhooks, "
            f"{done['redeemed']} codes redeemed{cancelled}")


def schedule_catch_up() -> dict[str, int]:
    """Queue catch-up for every shop whose interval has passed (rq cron runs this every minute).

    Safe to run twice or concurrently: a shop whose catch-up job is still live is not queued again.
    """
    rt = runtime.current()
    now = utcnow()
    queued = 0
    with rt.db.session_scope() as session:
        for shop_id in catch_up.due_shops(session, now):
            queued += enqueue_catch_up(rt.redis, shop_id)
            catch_up.mark_scheduled(session, session.get_one(Shop, shop_id), now)
    if queued:
        log.info("catch-up queued", extra={"status": f"{queued} shops"})
    return {"queued": queued}


def expire_codes() -> dict[str, int]:
    """Mark codes past their end ``expired``, shop by shop (rq cron runs this every five minutes).

    Safe to run twice or concurrently: the update only moves open codes, and a second run finds none.
    """
    rt = runtime.current()
    with rt.db.session_scope() as session:
        shop_ids = list(session.scalars(expiry.shops_with_codes(session)))
    expired = 0
    for shop_id in shop_ids:
        while True:  # a batch per transaction: a shop with many codes ending at once holds no long lock
            with rt.db.session_scope() as session:
                marked = expiry.expire_due(session, shop_id, utcnow())
            expired += marked
            if marked < expiry.BATCH:
                break
    if expired:
        log.info("codes expired", extra={"status": f"{expired} codes"})
    return {"expired": expired}
