"""Code jobs: issue a shop's pending codes (create on the store, attach to the customer), revoke one."""

from __future__ import annotations

import logging
import time
from collections import Counter

from rq import Retry, get_current_job

from app import runtime
from app.codes import issuance
from app.codes.issuance import Issuer, ShopRef
from app.models import IssuedCode, Shop
from app.runtime import Runtime
from app.shopify.client import AccessDenied, Throttled
from app.shopify.tokens import ShopNotInstalled
from workers.deferral import defer
from workers.events import final_attempt, is_transient

log = logging.getLogger(__name__)

TURN_SECONDS = 20.0  # an issuing job gives its worker back after this long (to the back of the queue)
MAX_RETURNS = 100_000  # deferrals and turns given back: a flood of codes drains through many of them


def _claimant(name: str) -> str:
    job = get_current_job()
    return job.id if job is not None else f"{name}-inline"


def installed_shop(rt: Runtime, shop_id: int) -> ShopRef | None:
    """The shop's id and domain, or None when it is gone or not installed (its work has stopped)."""
    with rt.db.session_scope() as session:
        shop = session.get(Shop, shop_id)
        return ShopRef(shop.id, shop.domain) if shop is not None and shop.is_installed else None


def issue_codes(shop_id: int, slot: int) -> str | Retry:
    """Issue the shop's pending codes, a batch of up to 8 at a time, until none is left.

    Each batch is claimed (so the shop's other slot takes other codes), created on the store one by
    one and attached with one ``metafieldsSet``. After ``TURN_SECONDS`` the job goes to the back of the
    queue (``Retry`` with no delay) so that other shops' work interleaves; when the shop's bucket is
    empty it is deferred for as long as the bucket needs (``workers.deferral``). Either way it keeps
    its claims, which the same job id (``issue-<shop>-<slot>``) takes back.

    Safe to run twice or concurrently: it works only on codes it can claim, each code continues from
    its recorded status, and every step is idempotent on the store (a create that may have landed is
    looked up first; metafields and tags are set, not added).
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"  # uninstall already stopped the shop's pending codes
    claimed: list[int] = []
    outcome: Counter[str] = Counter()
    started = time.monotonic()
    try:
        client = rt.admin_client(shop.id, shop.domain)
        issuer = Issuer(rt.db, rt.settings, client, shop, _claimant(f"issue-{slot}"))
        while True:
            # When the bucket is short, wait (without a worker) for a whole batch's points rather
            # than trickle codes out one by one: meanwhile more codes are reserved, and a full batch
            # spends one metafieldsSet on eight codes.
            if (wait := client.wait_for(issuance.BATCH_POINTS)) > 0:
                raise Throttled(f"{shop.domain}'s bucket is short of a batch", wait)
            claimed = issuer.claim()
            if not claimed:
                break
            try:
                outcome.update(issuer.issue(claimed))
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, ShopNotInstalled | AccessDenied):
                    raise
                # A bug or a refusal we did not expect: record it on the batch and go on with the others.
                log.warning("code issuance failed", exc_info=True, extra={"shop": shop.domain, "reason": str(exc)})
                issuance.fail_claimed(rt.db, shop.id, claimed, f"{type(exc).__name__}: {exc}")
                outcome["failed"] += len(claimed)
            issuer.release(claimed)
            claimed = []
            if time.monotonic() - started > TURN_SECONDS:
                _log_progress(shop, outcome, "turn given back")
                return Retry(max=MAX_RETURNS, interval=0)
    except ShopNotInstalled:
        return "shop not installed"
    except AccessDenied as exc:  # the token was revoked under us: the uninstall webhook is on its way
        issuance.fail_claimed(rt.db, shop.id, claimed, f"the store refused our access token: {exc}")
        return "store refused the token"
    except Throttled as exc:
        later = defer(exc, shop.domain, limit=MAX_RETURNS)
        if later is not None:
            _log_progress(shop, outcome, "deferred")
            return later
        raise
    except Exception as exc:  # transient: rq retries the job with back-off, unless this was its last try
        if final_attempt():
            issuance.fail_claimed(rt.db, shop.id, claimed, f"gave up after retries: {type(exc).__name__}: {exc}")
            log.warning("code issuance gave up", extra={"shop": shop.domain, "reason": str(exc)})
        raise
    return _log_progress(shop, outcome, "nothing left to issue")


def _log_progress(shop: ShopRef, outcome: Counter[str], status: str) -> str:
    summary = ", ".join(f"{count} {state}" for state, count in sorted(outcome.items())) or "no codes"
    log.info("codes issued", extra={"shop": shop.domain, "status": f"{summary}; {status}"})
    return f"{summary}; {status}"


def revoke_code(shop_id: int, code_id: int) -> str | Retry:
    """Deactivate a revoked code on the store and take it off its customer (metafields, tag).

    Safe to run twice: each step is recorded when done (``deactivated_at``, ``detached_at``) and skipped
    after, and each is idempotent on the store (deactivating twice changes nothing; detaching sets the
    customer to what our rows say they should show).
    """
    rt = runtime.current()
    shop = installed_shop(rt, shop_id)
    if shop is None:
        return "shop not installed"
    with rt.db.session_scope() as session:
        row = session.get(IssuedCode, code_id)
        if row is None or row.shop_id != shop.id or row.status != "revoked":
            return "not revoked"
        if issuance.revoke_done(row):
            return "deactivated already"
    try:
        issuer = Issuer(rt.db, rt.settings, rt.admin_client(shop.id, shop.domain), shop, _claimant("revoke"))
        if row.deactivated_at is None:
            row = issuer.deactivate(row)
        if issuance.needs_detaching(row):
            issuer.detach(row)
    except ShopNotInstalled:
        return "shop not installed"
    except Throttled as exc:
        later = defer(exc, shop.domain)
        if later is not None:
            return later
        raise
    log.info("code revoked on the store and its customer", extra={"shop": shop.domain, "code_id": code_id})
    return "deactivated"
