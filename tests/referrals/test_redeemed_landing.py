"""``GET /r/{token}`` for a browser whose friend code was already used on an order: a friendly "already
used" page on the way to the store, never a second code (an expired one is still replaced)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.codes import landing, referrals
from app.db import utcnow
from app.models import PoolCode, ReferralLink
from app.referrals.routes import COOKIE
from tests.codes.test_pool_take import a_pool
from tests.helpers import make_shop_with_programs, program_of
from tests.referrals.test_friend_landing import SHOP, code_of
from tests.referrals.test_landing import store_button


@pytest.fixture
def link(rt, db) -> ReferralLink:  # type: ignore[no-untyped-def]
    """A customer's link on a shop whose referral program is on, with a pool of 20 friend codes."""
    shop = make_shop_with_programs(db, rt.cipher)
    program_of(db, shop, "referral_reward").active = True
    db.commit()
    friend = program_of(db, shop, "referral_friend")
    friend.active = True
    db.commit()
    a_pool(db, friend, 20)
    made, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    return made


def redeem(db, code: str) -> None:  # type: ignore[no-untyped-def]
    """What reconciliation does when a paid order used the friend code."""
    db.execute(update(PoolCode).where(PoolCode.code == code)
               .values(status="redeemed", order_id=5550001, redeemed_at=utcnow()))
    db.commit()


def handed_out(db) -> int:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalar(select(func.count()).select_from(PoolCode).where(PoolCode.visitor.is_not(None)))


def test_a_browser_whose_code_was_used_gets_the_already_used_page_not_a_new_code(client, db, link):
    code = code_of(client.get(f"/r/{link.token}"))
    redeem(db, code)
    page = client.get(f"/r/{link.token}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert "<h1>You've already used your friend code</h1>" in text
    assert code not in text  # nothing to reuse
    assert store_button(text) == f"https://{SHOP} {SHOP}"
    assert page.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in page.headers  # the browser keeps its key: it stays "already used"
    assert handed_out(db) == 1
    assert client.get(f"/r/{link.token}").status_code == 200  # and again
    assert handed_out(db) == 1


def test_an_expired_code_is_still_replaced(client, db, link):
    first = code_of(client.get(f"/r/{link.token}"))
    db.execute(update(PoolCode).where(PoolCode.code == first).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    renewed = client.get(f"/r/{link.token}")
    assert code_of(renewed) != first and COOKIE in renewed.headers["Set-Cookie"]


def test_another_browser_still_gets_its_own_code(app, client, db, link):
    redeem(db, code_of(client.get(f"/r/{link.token}")))
    assert code_of(app.test_client().get(f"/r/{link.token}"))


def test_land_friend_says_redeemed_with_the_store_and_keeps_the_key(db, link):
    taken = landing.land_friend(db, link.token, None, address_allows=lambda *_: True)
    db.commit()
    assert taken.state == "code" and taken.code
    redeem(db, taken.code)
    again = landing.land_friend(db, link.token, taken.visitor_key, address_allows=lambda *_: True)
    assert (again.state, again.shop_domain, again.code, again.visitor_key) == (
        "redeemed", SHOP, None, taken.visitor_key)
