"""A customer's side of the referral program, as their storefront page (the app proxy) shows it.

- **Their link** (``page_link``): the active one; made on this visit when the program is on and the
  customer never had one (they signed up before it was on, or before OnceCode). A customer whose links
  were all retired gets none back: retiring is the merchant's decision (a link posted on a coupon site,
  say), and a page visit must not undo it.
- **The offer** (``referral_offer``): what a friend gets (the ``referral_friend`` program's value and
  minimum) and what the customer gets per referred order (the ``referral_reward`` program's value).
- **Their referrals** (``referrals_of``): one per friend's order that used a code from their link,
  newest first, with the status in plain words. Nothing about the friend (no customer id, order
  name or amount) leaves this module, and a fraud control's reason is never spelled out: a blocked
  referral is "not eligible", whichever control blocked it.

Every query is scoped by shop. No Flask here: ``app.proxy.routes`` calls these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.codes import referrals
from app.codes.customer_codes import is_open
from app.db import utcnow
from app.models import Customer, IssuedCode, Program, Referral, ReferralLink

MAX_SHOWN = 50

# Why a voided referral earned nothing, as the customer reads it. Blocked ones (the fraud controls) and
# any reason not listed here read ``NOT_ELIGIBLE``.
VOIDED_BECAUSE = {
    "order_cancelled": "the order was cancelled",
    "order_refunded": "the order was refunded",
    "reward_program_off": "the referral program was paused when the reward was due",
}
NOT_ELIGIBLE = "this order was not eligible for a reward"


# --- the link --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageLink:
    link: ReferralLink | None  # None: the program is off, or the merchant retired the customer's links
    new: bool  # made on this visit: the caller commits, then queues its metafield job


def page_link(session: Session, shop_id: int, shopify_customer_id: int, *, make: bool = True) -> PageLink:
    """The customer's link for their page (see the module docstring); ``make=False`` only looks (a
    ``HEAD``). The caller commits."""
    if not referrals.program_on(session, shop_id):
        return PageLink(None, False)
    customer_id = session.scalar(select(Customer.id).where(Customer.shop_id == shop_id,
                                                           Customer.shopify_customer_id == shopify_customer_id))
    if customer_id is not None:
        links = session.execute(select(ReferralLink.id, ReferralLink.status).where(
            ReferralLink.shop_id == shop_id, ReferralLink.customer_id == customer_id)).all()
        active = [link_id for link_id, status in links if status == "active"]
        if active:
            return PageLink(session.get(ReferralLink, active[0]), False)
        if links:
            return PageLink(None, False)  # retired by the merchant: not ours to renew
    if not make:
        return PageLink(None, False)
    link, new = referrals.create_link(session, shop_id, shopify_customer_id)
    return PageLink(link, new)


# --- the offer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    value_type: str  # percentage | fixed_amount | free_shipping
    value: Decimal
    minimum_subtotal: Decimal | None


@dataclass(frozen=True)
class ReferralOffer:
    friend: Offer | None  # None when the friend program is off: friends get no code just now
    reward: Offer


def referral_offer(session: Session, shop_id: int) -> ReferralOffer | None:
    """What a friend and the advocate get, from the shop's programs; None when the program is off."""
    found = {program.kind: program for program in session.scalars(select(Program).where(
        Program.shop_id == shop_id, Program.kind.in_(("referral_friend", "referral_reward"))))}
    reward, friend = found.get("referral_reward"), found.get("referral_friend")
    if reward is None or not reward.active:
        return None
    return ReferralOffer(friend=_offer(friend) if friend is not None and friend.active else None,
                         reward=_offer(reward))


def _offer(program: Program) -> Offer:
    return Offer(program.value_type, program.value, program.minimum_subtotal)


# --- the referrals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerReferral:
    """One friend's order, as its advocate sees it. ``state``: ``pending`` (held until ``reward_due``),
    ``rewarded`` (``reward_code`` while the customer can still use it; ``reward_coming`` while it is
    being created), ``not_rewarded`` (``why_not`` in plain words)."""

    ordered_at: datetime
    state: str
    reward_due: datetime | None = None
    reward_code: str | None = None
    reward_coming: bool = False
    why_not: str | None = None


def referrals_of(session: Session, shop_id: int, shopify_customer_id: int, *, limit: int = MAX_SHOWN,
                 now: datetime | None = None) -> list[CustomerReferral]:
    """The referrals a customer of a shop earned with their links, newest order first (at most ``limit``)."""
    moment = now or utcnow()
    rows = session.execute(
        select(Referral.ordered_at, Referral.status, Referral.reason, Referral.hold_until,
               IssuedCode.code, IssuedCode.status, IssuedCode.revoked_at, IssuedCode.removed_from_store_at,
               IssuedCode.expires_at)
        .join(Customer, Customer.id == Referral.advocate_id)
        .outerjoin(IssuedCode, and_(IssuedCode.id == Referral.reward_code_id, IssuedCode.shop_id == shop_id))
        .where(Referral.shop_id == shop_id, Customer.shop_id == shop_id,
               Customer.shopify_customer_id == shopify_customer_id)
        .order_by(Referral.ordered_at.desc(), Referral.id.desc()).limit(limit)).all()
    shown = []
    for ordered_at, status, reason, hold_until, code, code_status, revoked_at, removed_at, expires_at in rows:
        if status == "held":
            shown.append(CustomerReferral(ordered_at, "pending", reward_due=hold_until))
        elif status == "rewarded":
            usable = code is not None and is_open(code_status, revoked_at, removed_at, expires_at, moment)
            shown.append(CustomerReferral(ordered_at, "rewarded", reward_code=code if usable else None,
                                          reward_coming=code_status == "reserved"))
        else:
            why = VOIDED_BECAUSE.get(reason or "", NOT_ELIGIBLE) if status == "voided" else NOT_ELIGIBLE
            shown.append(CustomerReferral(ordered_at, "not_rewarded", why_not=why))
    return shown
