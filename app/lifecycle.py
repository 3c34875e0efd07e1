"""A shop's life with the app: install, default programs, uninstall, and the privacy (compliance) duties.

Plain functions over a SQLAlchemy session; no Flask, no HTTP. Each is idempotent: running it again
after it succeeded changes nothing, which is what duplicate webhooks and retried jobs need.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from redis import Redis
from sqlalchemy import String, cast, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.codes import referrals, rewards
from app.db import insert_ignoring_conflict, utcnow
from app.errors import Conflict
from app.models import Customer, DataRequest, IssuedCode, Program, ReferralLink, Shop, WebhookEvent
from app.queues import COMPLIANCE_TOPICS, cancel_job, job_id_for_event
from app.shopify.oauth import TokenGrant
from app.shopify.tokens import TokenCipher, forget_tokens, store_grant

log = logging.getLogger(__name__)

# Created at install, switched off: the merchant chooses the value before any code goes out.
DEFAULT_PROGRAMS: tuple[dict[str, Any], ...] = (
    {"kind": "welcome", "name": "Welcome code", "value_type": "percentage", "value": Decimal("10"),
     "expires_after_days": 30, "code_prefix": "WELCOME-"},
    {"kind": "referral_friend", "name": "Referred friend", "value_type": "percentage", "value": Decimal("10"),
     "expires_after_days": 30, "code_prefix": "FRIEND-"},
    {"kind": "referral_reward", "name": "Referral reward", "value_type": "percentage", "value": Decimal("15"),
     "expires_after_days": 60, "code_prefix": "THANKS-"},
)


def shop_by_domain(session: Session, domain: str) -> Shop | None:
    return session.scalar(select(Shop).where(Shop.domain == domain))


def install(session: Session, domain: str, grant: TokenGrant, api_version: str, cipher: TokenCipher) -> Shop:
    """Store a fresh token for the shop: a first install, a reinstall, or an install over a live one."""
    # Two callbacks for a new shop can race: the unique domain decides, then both update one row.
    insert_ignoring_conflict(session, Shop, ["domain"], domain=domain, api_version=api_version, settings={},
                             scopes="", installed_at=utcnow(), created_at=utcnow(), updated_at=utcnow())
    shop = session.scalars(select(Shop).where(Shop.domain == domain).with_for_update()).one()
    store_grant(shop, grant, cipher)
    shop.api_version = api_version
    shop.installed_at = utcnow()
    shop.uninstalled_at = None
    shop.setup_completed_at = None
    shop.setup_error = None
    session.flush()
    return shop


def create_default_programs(session: Session, shop_id: int) -> int:
    """The shop's welcome and referral programs, once. Returns how many were created now."""
    created = 0
    for spec in DEFAULT_PROGRAMS:
        # Insert and let the partial unique index (shop, kind) say "already there": no check first,
        # so two setup jobs racing cannot both create one.
        try:
            with session.begin_nested():
                session.add(Program(shop_id=shop_id, active=False, **spec))
        except IntegrityError:
            continue
        created += 1
    return created


def restart_setup(shop: Shop) -> None:
    """Mark the shop's post-install work (webhook subscriptions, default programs) as not done, for the
    caller to queue again (``enqueue_setup``) after fixing what made it fail. Both steps are idempotent.
    ``Conflict`` for a shop not installed: there is no token to do the work with."""
    if not shop.is_installed:
        raise Conflict(f"{shop.domain} is not installed; the merchant must install the app first")
    shop.setup_completed_at, shop.setup_error = None, None


def uninstall(session: Session, redis: Redis, domain: str, triggered_at: datetime | None) -> str:
    """``app/uninstalled``: forget the token, stop pending work. Data stays until ``shop/redact``."""
    shop = shop_by_domain(session, domain)
    if shop is None:
        return "unknown shop"
    if triggered_at is not None and triggered_at < shop.installed_at:
        return "stale: the shop reinstalled after this uninstall"
    if shop.uninstalled_at is None:
        shop.uninstalled_at = triggered_at or utcnow()
    forget_tokens(shop)
    shop.setup_completed_at = None
    dropped = drop_pending_events(session, redis, domain, reason="shop uninstalled")
    # Codes still on their way cannot reach the store any more; say so on each, where the merchant looks.
    codes = session.execute(update(IssuedCode).where(
        IssuedCode.shop_id == shop.id, IssuedCode.status.in_(("reserved", "created")))
        .values(status="failed", last_error="the store uninstalled OnceCode before this code was issued",
                claimed_by=None, claim_expires_at=None)).rowcount
    log.info("shop uninstalled", extra={"shop": domain,
                                        "status": f"{dropped} pending events dropped, {codes} codes stopped"})
    return "uninstalled"


def drop_pending_events(session: Session, redis: Redis, domain: str, reason: str) -> int:
    """Mark the shop's pending non-compliance events ignored and cancel their queued jobs."""
    events = session.scalars(
        select(WebhookEvent).where(WebhookEvent.shop_domain == domain, WebhookEvent.status == "pending",
                                   WebhookEvent.topic.not_in(COMPLIANCE_TOPICS | {"app/uninstalled"}))
    ).all()
    for event in events:
        event.status, event.last_error, event.payload = "ignored", reason, None
        cancel_job(redis, job_id_for_event(event.event_id))
    return len(events)


def customer_data(session: Session, shop: Shop, shopify_customer_id: int) -> dict[str, Any]:
    """Everything we hold on one customer of one shop, as the merchant receives it."""
    customer = session.scalar(select(Customer).where(Customer.shop_id == shop.id,
                                                     Customer.shopify_customer_id == shopify_customer_id))
    if customer is None:
        return {"customer": None, "referral_links": [], "codes": [], "note": "OnceCode holds no data on this customer."}
    codes = session.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop.id,
                                                     IssuedCode.customer_id == customer.id)
                            .order_by(IssuedCode.issued_at)).all()
    referrer = session.get(Customer, customer.referred_by_id) if customer.referred_by_id else None
    links = session.scalars(select(ReferralLink).where(ReferralLink.shop_id == shop.id,
                                                       ReferralLink.customer_id == customer.id)
                            .order_by(ReferralLink.id)).all()
    return {
        "customer": {
            "shopify_customer_id": customer.shopify_customer_id,
            "known_since": customer.created_at.isoformat(),
            "referred_by_shopify_customer_id": referrer.shopify_customer_id if referrer else None,
            # Said, never shown: the keyed hash is useless to anyone without the key, and is no email.
            "email_fingerprint": "held (a keyed hash; no email is stored)" if customer.email_hash else None,
        },
        "referral_links": [
            {"token": link.token, "status": link.status, "created_at": link.created_at.isoformat(),
             "retired_at": link.retired_at.isoformat() if link.retired_at else None, "clicks": link.clicks}
            for link in links
        ],
        "codes": [
            {"code": c.code, "status": c.status, "issued_at": c.issued_at.isoformat(),
             "expires_at": c.expires_at.isoformat() if c.expires_at else None,
             "redeemed_at": c.redeemed_at.isoformat() if c.redeemed_at else None,
             "order_id": c.order_id, "order_name": c.order_name,
             "order_total": str(c.order_total) if c.order_total is not None else None,
             "discount_amount": str(c.discount_amount) if c.discount_amount is not None else None,
             "currency": c.currency}
            for c in codes
        ],
    }


def data_requested(session: Session, shop: Shop, payload: dict[str, Any]) -> bool:
    """``customers/data_request``: store what we hold on the customer for the merchant to fetch."""
    customer_id = int(payload["customer"]["id"])
    request_id = int(payload["data_request"]["id"])
    data = customer_data(session, shop, customer_id)
    data["orders_requested"] = payload.get("orders_requested") or []
    return insert_ignoring_conflict(
        session, DataRequest, ["shop_id", "shopify_request_id"],
        shop_id=shop.id, shopify_request_id=request_id, shopify_customer_id=customer_id,
        data=data, created_at=utcnow(),
    )


def redact_customer(session: Session, shop: Shop, payload: dict[str, Any], current_event_id: str) -> None:
    """``customers/redact``: erase what identifies the customer; keep anonymous code statistics."""
    customer_id = int(payload["customer"]["id"])
    # Codes keep their numbers (for the merchant's metrics) but lose the link to the person: the
    # customer row goes, and so do idempotency keys that name the customer's Shopify id.
    customer = session.scalar(select(Customer.id).where(Customer.shop_id == shop.id,
                                                        Customer.shopify_customer_id == customer_id))
    if customer is not None:
        session.execute(update(IssuedCode).where(IssuedCode.shop_id == shop.id, IssuedCode.customer_id == customer)
                        .values(idempotency_key="redacted:" + cast(IssuedCode.id, String)))
        # Their links stop working and lose their owner (the row keeps its anonymous click count).
        referrals.retire_for_redaction(session, shop.id, customer)
    session.execute(delete(Customer).where(Customer.shop_id == shop.id,
                                           Customer.shopify_customer_id == customer_id))
    rewards.forget_buyer(session, shop.id, customer_id)
    session.execute(delete(DataRequest).where(DataRequest.shop_id == shop.id,
                                              DataRequest.shopify_customer_id == customer_id))
    # Unprocessed webhook bodies may still carry the customer's email, name or address.
    for event in session.scalars(select(WebhookEvent).where(
            WebhookEvent.shop_domain == shop.domain, WebhookEvent.payload.is_not(None),
            WebhookEvent.event_id != current_event_id)):
        if _mentions_customer(event, customer_id):
            event.payload = None
            if event.status == "pending":
                event.status, event.last_error = "ignored", "customer redacted"


def _mentions_customer(event: WebhookEvent, customer_id: int) -> bool:
    try:
        body = json.loads(event.payload or "")
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    # customers/* bodies are the customer itself; orders and compliance requests nest it.
    subject = body if event.topic in ("customers/create", "customers/update") else body.get("customer")
    return isinstance(subject, dict) and str(subject.get("id")) == str(customer_id)


SHOP_STILL_INSTALLED = "the shop has OnceCode installed: nothing erased"


def redact_shop(session: Session, domain: str, keep_event_id: str) -> str:
    """``shop/redact`` (48 h after uninstall): erase everything we hold for the shop.

    Never for a shop that has the app installed now (it reinstalled since it uninstalled, or the
    request is not Shopify's): that returns ``SHOP_STILL_INSTALLED`` and erases nothing. The shop row
    is locked first, so an install running at the same moment either waits for the erasure to commit
    (and starts afresh) or has committed and is seen here.
    """
    shop = session.scalars(select(Shop).where(Shop.domain == domain).with_for_update()).one_or_none()
    if shop is not None and shop.is_installed:
        log.warning("shop/redact refused: the shop is installed", extra={"shop": domain, "event_id": keep_event_id,
                                                                          "reason": SHOP_STILL_INSTALLED})
        return SHOP_STILL_INSTALLED
    if shop is not None:
        session.delete(shop)  # programs, customers, codes and data requests go with it
    session.execute(delete(WebhookEvent).where(WebhookEvent.shop_domain == domain,
                                               WebhookEvent.event_id != keep_event_id))
    session.execute(update(WebhookEvent).where(WebhookEvent.event_id == keep_event_id).values(payload=None))
    return "redacted"

