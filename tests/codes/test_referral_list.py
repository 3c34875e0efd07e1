"""The referral list (``app.codes.referral_list``): newest first, filters, keyset pages, the shop's own,
each reason in plain words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from app.codes import referrals
from app.codes.referral_list import REASONS, get_referral, list_referrals, referral_json
from app.errors import BadRequest, NotFound
from app.models import REFERRAL_REASONS, Referral, Shop
from tests.helpers import issued_code, make_shop_with_programs, program_of

ORDERED = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
FRIEND_ID = 7_770_123_456_789  # the friend's Shopify id: long enough never to appear by chance in ids or times
_orders = iter(range(5001, 10**6))


def a_referral(session, shop: Shop, advocate: int = 42, status: str = "held", reason: str | None = None,
               **fields: Any) -> Referral:
    """A referral as ``app.codes.rewards`` records it: the advocate's link handed out the friend code."""
    link, _ = referrals.create_link(session, shop.id, advocate)
    order = next(_orders)
    row = Referral(shop_id=shop.id, program_id=program_of(session, shop, "referral_reward").id, link_id=link.id,
                   advocate_id=link.customer_id, friend_code=f"FRIEND-{order}", friend_customer_id=FRIEND_ID,
                   shopify_order_id=order, order_name=f"#{order}", currency="EUR", order_total=Decimal("80.00"),
                   discount_amount=Decimal("8.00"), ordered_at=ORDERED, status=status, reason=reason,
                   hold_until=ORDERED + timedelta(days=14),
                   decided_at=None if status == "held" else ORDERED + timedelta(days=1))
    for name, value in fields.items():
        setattr(row, name, value)
    session.add(row)
    session.commit()
    return row


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def ids(rows) -> list[int]:  # type: ignore[no-untyped-def]
    return [row.referral.id for row in rows]


def test_newest_first_in_keyset_pages(db, shop):
    made = [a_referral(db, shop).id for _ in range(5)]
    first = list_referrals(db, shop.id, limit=2)
    assert ids(first) == made[:-3:-1]
    second = list_referrals(db, shop.id, limit=2, before_id=ids(first)[-1])
    assert ids(second) == made[2:0:-1]
    assert ids(list_referrals(db, shop.id, before_id=made[0])) == []


def test_filters(db, shop):
    held = a_referral(db, shop, advocate=42)
    blocked = a_referral(db, shop, advocate=43, status="blocked", reason="self_referral")
    voided = a_referral(db, shop, advocate=42, status="voided", reason="order_refunded")
    assert ids(list_referrals(db, shop.id, status="blocked")) == [blocked.id]
    assert ids(list_referrals(db, shop.id, advocate=42)) == [voided.id, held.id]
    assert ids(list_referrals(db, shop.id, link_id=blocked.link_id)) == [blocked.id]
    assert ids(list_referrals(db, shop.id, status="held", advocate=43)) == []
    with pytest.raises(BadRequest, match="status must be one of held, rewarded, voided, blocked, not 'open'"):
        list_referrals(db, shop.id, status="open")


def test_another_shops_referral_is_missing_exactly_like_one_that_never_was(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    theirs = a_referral(db, other, advocate=42)
    mine = a_referral(db, shop, advocate=42)
    assert ids(list_referrals(db, shop.id)) == [mine.id]
    assert ids(list_referrals(db, shop.id, advocate=42)) == [mine.id]
    assert ids(list_referrals(db, shop.id, link_id=theirs.link_id)) == []
    with pytest.raises(NotFound) as foreign:
        get_referral(db, shop.id, theirs.id)
    with pytest.raises(NotFound) as missing:
        get_referral(db, shop.id, theirs.id + 1000)
    assert str(foreign.value) == f"no referral {theirs.id} for this store"
    assert str(missing.value) == f"no referral {theirs.id + 1000} for this store"


def test_the_json_of_a_rewarded_referral(db, shop):
    reward = issued_code(db, shop, "REWARD-ABC", kind="referral_reward")
    row = a_referral(db, shop, advocate=42, status="rewarded", reward_code_id=reward.id)
    shown = referral_json(get_referral(db, shop.id, row.id))
    assert shown == {
        "id": row.id, "status": "rewarded", "reason": None, "explanation": "the advocate was given a reward code",
        "link_id": row.link_id, "advocate_customer_id": 42, "friend_code": row.friend_code,
        "order": {"id": row.shopify_order_id, "name": row.order_name}, "total": "80.00", "discount": "8.00",
        "currency": "EUR", "ordered_at": "2026-11-20T15:00:00+00:00", "recorded_at": row.created_at.isoformat(),
        "hold_until": "2026-12-04T15:00:00+00:00", "decided_at": "2026-11-21T15:00:00+00:00",
        "reward_code": {"id": reward.id, "code": "REWARD-ABC"},
    }
    assert str(FRIEND_ID) not in str(shown)  # the friend's customer id is for the fraud checks, not for the list


def test_a_held_referral_says_until_when(db, shop):
    row = a_referral(db, shop)
    shown = referral_json(get_referral(db, shop.id, row.id))
    assert shown["reward_code"] is None and shown["decided_at"] is None
    assert shown["explanation"].startswith("held until 2026-12-04 15:00 UTC; a cancellation or a refund")


@pytest.mark.parametrize("reason", REFERRAL_REASONS)
def test_every_reason_is_put_in_plain_words(db, shop, reason):
    status = "voided" if reason.startswith(("order_", "reward_", "advocate_erased")) else "blocked"
    row = a_referral(db, shop, status=status, reason=reason)
    shown = referral_json(get_referral(db, shop.id, row.id))
    assert shown["reason"] == reason
    assert shown["explanation"] == REASONS[reason] and "_" not in shown["explanation"]


def test_a_referral_whose_advocate_and_link_are_gone(db, shop):
    row = a_referral(db, shop, advocate_id=None, link_id=None, status="blocked", reason="no_advocate",
                     discount_amount=None)
    shown = referral_json(get_referral(db, shop.id, row.id))
    assert (shown["advocate_customer_id"], shown["link_id"], shown["discount"]) == (None, None, None)
