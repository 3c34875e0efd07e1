"""Code jobs: issue (create on the store, attach to the customer) and revoke. Each takes a shop id and a code id."""

from __future__ import annotations

import logging

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


def _claimant(code_id: int, action: str) -> str:
    job = get_current_job()
    return job.id if job is not None else f"{action}-{code_id}-inline"


def _shop(rt: Runtime, shop_id: int) -> ShopRef | None:
    with rt.db.session_scope() as session:
        shop = session.get(Shop, shop_id)
        return ShopRef(shop.id, shop.domain) if shop is not None and shop.is_installed else None


def issue_code(shop_id: int, code_id: int) -> str | Retry:
    """Create code ``code_id`` on the store and attach it, with up to 7 more of the shop's pending codes.

    Safe to run twice or concurrently: it works only on codes it can claim, each code continues
    from its recorded status, and every step is idempotent on the store (a create that may have
    landed is looked up first, metafields and tags are set, not added to). A throttled job hands
    itself back to rq (``Retry``) and keeps its claims, which the same job id takes back.
    """
    rt = runtime.current()
    shop = _shop(rt, shop_id)
    if shop is None:
        return "shop not installed"  # uninstall already stopped the shop's pending codes
    issuer = None
    claimed: list[int] = []
    try:
        issuer = Issuer(rt.db, rt.settings, rt.admin_client(shop.id, shop.domain), shop,
                        _claimant(code_id, "issue"))
        claimed = issuer.claim(first=code_id)
        if not claimed:
            return "nothing to do: issued already, or by another job"
        outcome = issuer.issue(claimed)
    except ShopNotInstalled:
        return "shop not installed"
    except AccessDenied as exc:  # the token was revoked under us: the uninstall webhook is on its way
        issuance.fail_claimed(rt.db, shop.id, claimed, f"the store refused our access token: {exc}")
        return "store refused the token"
    except Throttled as exc:
        later = defer(exc, shop.domain)
        if later is not None:
            return later
        raise
    except Exception as exc:
        if not is_transient(exc) or final_attempt():
            issuance.fail_claimed(rt.db, shop.id, claimed, f"{type(exc).__name__}: {exc}")
            log.warning("code issuance failed", exc_info=not is_transient(exc),
                        extra={"shop": shop.domain, "code_id": code_id, "reason": str(exc)})
            if not is_transient(exc):
                return "failed"
        raise
    issuer.release(claimed)
    summary = ", ".join(f"{count} {status}" for status, count in sorted(outcome.items()))
    log.info("codes issued", extra={"shop": shop.domain, "code_id": code_id, "status": summary})
    return summary


def revoke_code(shop_id: int, code_id: int) -> str | Retry:
    """Deactivate a revoked code on the store. Safe to run twice: deactivating twice changes nothing."""
    rt = runtime.current()
    shop = _shop(rt, shop_id)
    if shop is None:
        return "shop not installed"
    with rt.db.session_scope() as session:
        row = session.get(IssuedCode, code_id)
        if row is None or row.shop_id != shop.id or row.status != "revoked":
            return "not revoked"
        if row.deactivated_at is not None:
            return "deactivated already"
    try:
        issuer = Issuer(rt.db, rt.settings, rt.admin_client(shop.id, shop.domain), shop,
                        _claimant(code_id, "revoke"))
        issuer.deactivate(row)
    except ShopNotInstalled:
        return "shop not installed"
    except Throttled as exc:
        later = defer(exc, shop.domain)
        if later is not None:
            return later
        raise
    log.info("code deactivated", extra={"shop": shop.domain, "code_id": code_id})
    return "deactivated"
