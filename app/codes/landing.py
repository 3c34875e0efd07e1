"""The friend's side of a referral link: ``GET /r/{token}`` hands the visitor a friend code.

- **Which code.** The visitor's browser carries a random key (``new_visitor_key``, in a signed cookie
  the route keeps); the code is ``pool_codes.visitor``'s row for that key, so the same browser gets the
  same code back. A fresh one is taken from the pool with ``pools.take_friend_code`` (one atomic
  ``UPDATE``), recording the link that handed it out.
- **A code that can no longer be used** (past its own expiry, or expired and deleted by the sweep):
  the browser gets a new key and a new code, within the caps: the old one cannot give a discount any
  more, and the friend opened the link to get one.
- **A code already used** (``redeemed``: reconciliation saw a paid order with it) is not replaced: the
  friend got their discount, and a fresh code per visit would make one link a discount per order. The
  browser gets the friendly "already used" page (``redeemed``) and goes on to the store.
- **When "the program is on".** The shop's ``referral_reward`` program is active (as for links,
  ``referrals.program_on``) and its ``referral_friend`` program, whose pool the code comes from, is
  active too; otherwise the visitor gets the friendly page and goes on to the store without a code.
- **Caps** (``referral_friend`` program settings, 0 = off), checked only before a *new* code: a browser
  reopening its link costs nothing. Per link, codes handed out in the last 24 hours (one indexed
  count); per client address, an hourly budget on the rate limiter's Redis (the caller's
  ``address_allows``). A capped visitor gets the friendly page, and the block is recorded
  (``referral_blocks``: shop, link, reason, time — no address) for the merchant.

Never calls the Admin API: an empty pool queues a top-up (``take_friend_code``) and the visitor goes on
without a code. No Flask here: the route passes the client address check in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.codes import pools, referrals
from app.db import utcnow
from app.errors import BadRequest
from app.models import Customer, PoolCode, Program, ReferralBlock, ReferralLink
from app.params import shown

VISITOR_KEY_BYTES = 24  # 192 random bits: a key can be neither guessed nor enumerated
DAY = timedelta(days=1)


def new_visitor_key() -> str:
    return secrets.token_urlsafe(VISITOR_KEY_BYTES)


@dataclass(frozen=True)
class FriendLanding:
    """What the landing decided. ``state``: ``code`` (``code`` and ``redirect_path`` set), or why not:
    ``unknown``, ``retired``, ``store_closed``, ``program_off``, ``pool_empty``, ``capped``, ``redeemed``
    (this browser's code was used on an order).
    ``visitor_key`` is the key the browser must keep (a new one when it had none or its code was spent)."""

    state: str  # see the docstring; ``active`` only from ``peek``
    shop_domain: str | None = None
    code: str | None = None
    redirect_path: str | None = None
    visitor_key: str | None = None
    click: referrals.Click | None = None  # to be counted once the landing has committed (``record_click``)


def usable(code: PoolCode, now: datetime) -> bool:
    """Whether a handed-out code still gives its discount (as far as the pool knows)."""
    return code.status == "handed_out" and (code.expires_at is None or code.expires_at > now)


def land_friend(session: Session, token: str, visitor_key: str | None, *,
                address_allows: Callable[[int, int], bool], count_click: bool = True,
                now: datetime | None = None) -> FriendLanding:
    """Resolve a landing: the visitor's code, or why there is none. ``address_allows(shop_id, per_hour)``
    counts one new code against the client address and says whether it is within the budget.
    The caller commits (the code taken, a block recorded), then records the answer's ``click``
    (``referrals.record_click``) when ``count_click``."""
    now = now or utcnow()
    found = referrals.land(session, token)
    if found.state != "active" or found.shop_id is None or found.link_id is None:
        return FriendLanding(found.state, found.shop_domain, visitor_key=visitor_key)
    shop_id, domain = found.shop_id, found.shop_domain
    click = referrals.Click(shop_id, found.link_id, now) if count_click else None
    programs = {p.kind: p for p in session.scalars(select(Program).where(
        Program.shop_id == shop_id, Program.kind.in_(("referral_reward", "referral_friend"))))}
    friend, reward = programs.get("referral_friend"), programs.get("referral_reward")
    if friend is None or reward is None or not (friend.active and reward.active):
        return FriendLanding("program_off", domain, visitor_key=visitor_key, click=click)
    if visitor_key is not None:
        mine = session.scalar(select(PoolCode).where(PoolCode.shop_id == shop_id, PoolCode.program_id == friend.id,
                                                     PoolCode.visitor == visitor_key))
        if mine is not None:
            if usable(mine, now):
                return FriendLanding("code", domain, mine.code, friend.redirect_path, visitor_key, click=click)
            if mine.status == "redeemed":  # used on an order: one friend code per friend, not one per order
                return FriendLanding("redeemed", domain, visitor_key=visitor_key, click=click)
            visitor_key = None  # expired: this browser starts afresh
    blocked = _capped(session, friend, found.link_id, now, address_allows)
    if blocked is not None:
        session.add(ReferralBlock(shop_id=shop_id, link_id=found.link_id, reason=blocked, at=now))
        return FriendLanding("capped", domain, visitor_key=visitor_key, click=click)
    key = visitor_key or new_visitor_key()
    taken = pools.take_friend_code(session, shop_id, friend.id, key, now=now, link_id=found.link_id)
    if taken is None:
        return FriendLanding("pool_empty", domain, visitor_key=visitor_key, click=click)
    if visitor_key is None and click is not None:  # a new browser got a code (the metrics' unique visitors)
        click = replace(click, new_visitor=True)
    return FriendLanding("code", domain, taken.code, friend.redirect_path, key, click=click)


def peek(session: Session, token: str) -> FriendLanding:
    """A look without effect (``HEAD``: link checkers, previews): ``active`` or why not; no click counted,
    no code taken."""
    found = referrals.land(session, token)
    return FriendLanding(found.state, found.shop_domain)


def _capped(session: Session, friend: Program, link_id: int | None, now: datetime,
            address_allows: Callable[[int, int], bool]) -> str | None:
    """The cap a new code would break (``link_daily_cap``, ``address_hourly_cap``), or None. The link's
    cap is read first: a visitor it refuses spends nothing of their address's budget."""
    per_link = friend.friend_codes_per_link_per_day
    if per_link and link_id is not None and session.scalar(
            select(func.count()).select_from(PoolCode).where(
                PoolCode.link_id == link_id, PoolCode.shop_id == friend.shop_id,
                PoolCode.handed_out_at > now - DAY)) >= per_link:
        return "link_daily_cap"
    per_address = friend.friend_codes_per_address_per_hour
    if per_address and not address_allows(friend.shop_id, per_address):
        return "address_hourly_cap"
    return None


# --- the merchant's side: cap settings and recorded blocks -----------------------------------------

CAP_SETTINGS = {"per_link_per_day": "friend_codes_per_link_per_day",
                "per_address_per_hour": "friend_codes_per_address_per_hour"}
MAX_CAP = 100_000


def cap_problems(changes: dict[str, Any]) -> list[str]:
    """Every problem with a change of landing caps (names of ``CAP_SETTINGS``; whole numbers 0 to
    ``MAX_CAP``, 0 turning the cap off)."""
    problems = []
    for name, value in changes.items():
        if name not in CAP_SETTINGS:
            problems.append(f"unknown cap {shown(name)} (known: {', '.join(CAP_SETTINGS)})")
        elif (problem := cap_problem(name, value)) is not None:
            problems.append(problem)
    return problems


def cap_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for a cap shown as ``name``, or None: the one cap rule, for
    ``set_caps`` and ``referral_settings``. A whole number (not a bool) from 0 (no cap) to ``MAX_CAP``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAP:
        return f"{name} must be a whole number from 0 (no cap) to {MAX_CAP}, not {shown(value)}"
    return None


def set_caps(session: Session, friend: Program, changes: dict[str, Any]) -> Program:
    """Change a referral-friend program's landing caps, all or nothing; every problem at once."""
    problems = cap_problems(changes)
    if friend.kind != "referral_friend":
        problems.insert(0, f"caps belong to the referral_friend program, not to a {friend.kind} program")
    if problems:
        raise BadRequest("; ".join(problems))
    for name, value in changes.items():
        setattr(friend, CAP_SETTINGS[name], value)
    session.flush()
    return friend


def caps_json(friend: Program) -> dict[str, int]:
    return {name: getattr(friend, column) for name, column in CAP_SETTINGS.items()}


def blocks(session: Session, shop_id: int, *, link_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The shop's recorded landing blocks, newest first, with the Shopify id of the link's customer (the
    advocate a merchant knows; None once the link or its customer is gone)."""
    query = (select(ReferralBlock, Customer.shopify_customer_id)
             .outerjoin(ReferralLink, and_(ReferralLink.id == ReferralBlock.link_id, ReferralLink.shop_id == shop_id))
             .outerjoin(Customer, and_(Customer.id == ReferralLink.customer_id, Customer.shop_id == shop_id))
             .where(ReferralBlock.shop_id == shop_id).order_by(ReferralBlock.id.desc()).limit(limit))
    if link_id is not None:
        query = query.where(ReferralBlock.link_id == link_id)
    return [{"id": b.id, "link_id": b.link_id, "customer_id": customer, "reason": b.reason, "at": b.at.isoformat()}
            for b, customer in session.execute(query)]
