"""The referral parts of the customer's storefront page: the link (made on a first visit), the share
links, the offer, the referrals in plain words, and the Copy button's script served through the proxy."""

from __future__ import annotations

import hashlib
import hmac
import html
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest
from rq.job import Job
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.codes import customer_referrals, programs, referrals
from app.codes.issuance import remember_customer
from app.db import utcnow
from app.models import Customer, IssuedCode, Program, Referral, ReferralLink, Shop
from app.queues import referral_link_job_id
from tests.conftest import API_SECRET
from tests.helpers import make_shop_with_programs, program_of
from tests.proxy.test_customer_page import ADA, BOB, OTHER_SHOP, SHOP, give_code, page, proxy_query

APP_URL_LINK = re.compile(r'<input id="oncecode-link" type="text" value="([^"]+)"')


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, SHOP)


def program_on(db: Session, shop: Shop, friend: bool = True, **reward_changes: object) -> None:
    """The referral program on: its reward program active (with ``reward_changes``), the friend one too."""
    reward = program_of(db, shop, "referral_reward")
    programs.update_program(db, shop.id, reward.id, {"active": True, **reward_changes})
    friend_program = program_of(db, shop, "referral_friend")
    programs.update_program(db, shop.id, friend_program.id, {"active": friend})
    db.commit()


def links_of(db: Session, shop: Shop, customer: int) -> list[ReferralLink]:
    db.expire_all()
    return list(db.scalars(select(ReferralLink).join(Customer, Customer.id == ReferralLink.customer_id).where(
        ReferralLink.shop_id == shop.id, Customer.shopify_customer_id == customer).order_by(ReferralLink.id)))


def shown_link(text: str) -> str:
    found = APP_URL_LINK.search(text)
    assert found, text
    return html.unescape(found.group(1))


def referral(db: Session, shop: Shop, advocate: int, order_id: int, status: str = "held", *,
             ordered_at: datetime | None = None, hold_until: datetime | None = None, reason: str | None = None,
             reward_code: IssuedCode | None = None) -> Referral:
    """A referral as rewards.py records it: a friend's order that used a code from ``advocate``'s link."""
    owner, _ = remember_customer(db, shop.id, advocate)
    ordered = ordered_at or utcnow() - timedelta(days=1)
    row = Referral(shop_id=shop.id, advocate_id=owner.id, friend_code=f"FRIEND{order_id}",
                   friend_customer_id=990000 + order_id, shopify_order_id=order_id, order_name=f"#F{order_id}",
                   currency="EUR", order_total=Decimal("123.45"), discount_amount=Decimal("12.34"),
                   ordered_at=ordered, status=status, reason=reason,
                   hold_until=hold_until or ordered + timedelta(days=14),
                   reward_code_id=reward_code.id if reward_code is not None else None)
    db.add(row)
    db.commit()
    return row


# --- the link ------------------------------------------------------------------------------------

def test_a_first_visit_makes_the_customers_link_and_queues_its_metafield_job(client, db, rt, shop: Shop):
    program_on(db, shop)
    assert links_of(db, shop, ADA) == []
    answer = page(client)
    assert answer.status_code == 200
    [link] = links_of(db, shop, ADA)
    assert link.status == "active" and link.synced_at is None
    assert shown_link(answer.text) == f"{rt.settings.app_url}/r/{link.token}"
    assert Job.exists(referral_link_job_id(link.id, "active"), connection=rt.redis)

    again = page(client)  # the next visit shows the same link and makes no other
    assert shown_link(again.text) == shown_link(answer.text)
    assert [row.id for row in links_of(db, shop, ADA)] == [link.id]


def test_a_head_request_makes_no_link(client, db, shop: Shop):
    program_on(db, shop)
    assert client.head("/proxy?" + proxy_query()).status_code == 200
    assert links_of(db, shop, ADA) == []


def test_a_customer_with_a_link_sees_it_and_no_job_is_queued(client, db, rt, shop: Shop):
    program_on(db, shop)
    link, _ = referrals.create_link(db, shop.id, ADA)
    link.synced_at = utcnow()  # already on the customer
    db.commit()
    answer = page(client)
    assert shown_link(answer.text) == referrals.link_url(rt.settings, link.token)
    assert not Job.exists(referral_link_job_id(link.id, "active"), connection=rt.redis)


def test_no_link_and_no_referral_section_while_the_program_is_off(client, db, shop: Shop):
    answer = page(client)
    assert answer.status_code == 200
    assert "Refer a friend" not in answer.text and "oncecode-link" not in answer.text
    assert "<script" not in answer.text
    assert links_of(db, shop, ADA) == []  # the visit made none
    assert "You have not referred anyone yet." in answer.text


def test_a_link_the_merchant_retired_is_not_renewed_by_a_visit(client, db, shop: Shop):
    program_on(db, shop)
    link, _ = referrals.create_link(db, shop.id, ADA)
    referrals.retire(db, link)
    db.commit()
    answer = page(client)
    assert "oncecode-link" not in answer.text and link.token not in answer.text
    assert "You have no referral link at the moment." in answer.text
    assert [row.status for row in links_of(db, shop, ADA)] == ["retired"]


def test_the_link_is_shared_with_plain_links_and_copied_by_our_own_script(client, db, rt, shop: Shop):
    program_on(db, shop)
    answer = page(client)
    url = shown_link(answer.text)
    hrefs = [html.unescape(h) for h in re.findall(r'<a href="([^"]+)"', answer.text)]
    email = next(h for h in hrefs if h.startswith("mailto:"))
    whatsapp = next(h for h in hrefs if h.startswith("https://wa.me/?"))
    post = next(h for h in hrefs if h.startswith("https://x.com/intent/tweet?"))
    assert "%20" in email and "+" not in email  # RFC 6068: spaces as %20 (a mail client shows a + as a +)
    mail = parse_qs(urlsplit(email).query)
    assert mail["subject"] == ["A gift for you"] and mail["body"] == [f"Here is 10 % off for you: {url}"]
    assert parse_qs(urlsplit(whatsapp).query)["text"] == [f"Here is 10 % off for you: {url}"]
    assert parse_qs(urlsplit(post).query) == {"text": ["Here is 10 % off for you"], "url": [url]}
    # The only script is ours, from the store's own origin (the proxy path); the Copy button is its
    # own doing: without it, no button that does nothing, and the read-only field is enough.
    assert re.findall(r"<script[^>]*>", answer.text) == ['<script src="/apps/oncecode/copy.js" defer>']
    assert "<button" not in answer.text
    assert re.search(r'<input id="oncecode-link" type="text" value="[^"]+" readonly .*data-oncecode-copy=', answer.text,
                     re.S)


def test_the_copy_script_is_served_through_the_proxy_and_verified_like_every_request(client, shop: Shop):
    script = client.get("/proxy/copy.js?" + proxy_query(customer=None))
    assert script.status_code == 200
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "input[data-oncecode-copy]" in script.text and "navigator.clipboard" in script.text
    assert client.get("/proxy/copy.js").status_code == 401  # unsigned: refused like the page
    tampered = proxy_query(customer=None).replace("shop=", "shop=x")
    assert client.get("/proxy/copy.js?" + tampered).status_code in (400, 401)


def test_the_script_follows_the_path_prefix_the_merchant_chose(client, db, shop: Shop):
    program_on(db, shop)
    query = proxy_query().replace("path_prefix=%2Fapps%2Foncecode", "path_prefix=%2Ftools%2Frewards")
    answer = client.get("/proxy?" + _resigned(query))  # (the prefix is one of the signed parameters)
    assert '<script src="/tools/rewards/copy.js" defer>' in answer.text


def _resigned(query: str) -> str:
    """``query`` signed again, after a test changed one of Shopify's parameters (no key repeats here)."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "signature"]
    message = "".join(f"{k}={v}" for k, v in sorted(pairs))
    return urlencode([*pairs, ("signature", hmac.new(API_SECRET.encode(), message.encode(),
                                                       hashlib.sha256).hexdigest())])


# --- the offer -------------------------------------------------------------------------------------

def test_the_offer_names_what_a_friend_and_the_customer_get(client, db, shop: Shop):
    friend = program_of(db, shop, "referral_friend")
    programs.update_program(db, shop.id, friend.id, {"value_type": "fixed_amount", "value": "5.00",
                                                     "minimum_subtotal": "30.00"})
    program_on(db, shop, value=20)
    answer = page(client)
    assert ("Friends who open your link get 5.00 off on orders of 30.00 or more, and you get 20 % off for "
            "each friend’s order that goes through.") in answer.text


def test_the_offer_leaves_the_friend_out_while_the_friend_program_is_off(client, db, shop: Shop):
    program_on(db, shop, friend=False)
    answer = page(client)
    assert "You get 15 % off for each friend’s order placed with a code from your link." in answer.text
    assert "Friends who open" not in answer.text


# --- the referrals ---------------------------------------------------------------------------------

def test_referrals_are_listed_newest_first_in_plain_words(client, db, shop: Shop):
    program_on(db, shop)
    day = datetime(2026, 11, 2, 12, tzinfo=UTC)
    reward_open = give_code(db, shop, ADA, kind="referral_reward", key="reward-open")
    reward_used = give_code(db, shop, ADA, kind="referral_reward", status="redeemed", key="reward-used")
    reward_coming = give_code(db, shop, ADA, kind="referral_reward", status="reserved", key="reward-coming")
    referral(db, shop, ADA, 1, "held", ordered_at=day, hold_until=day + timedelta(days=14))
    referral(db, shop, ADA, 2, "rewarded", ordered_at=day - timedelta(days=1), reward_code=reward_open)
    referral(db, shop, ADA, 3, "rewarded", ordered_at=day - timedelta(days=2), reward_code=reward_used)
    referral(db, shop, ADA, 4, "rewarded", ordered_at=day - timedelta(days=3), reward_code=reward_coming)
    referral(db, shop, ADA, 5, "voided", ordered_at=day - timedelta(days=4), reason="order_cancelled")
    referral(db, shop, ADA, 6, "voided", ordered_at=day - timedelta(days=5), reason="order_refunded")
    referral(db, shop, ADA, 7, "blocked", ordered_at=day - timedelta(days=6), reason="self_referral")
    referral(db, shop, ADA, 8, "blocked", ordered_at=day - timedelta(days=7), reason="same_email")
    referral(db, shop, ADA, 9, "voided", ordered_at=day - timedelta(days=8), reason="advocate_erased")

    answer = page(client)
    listed = re.search(r'<ul class="oncecode-referrals">(.*?)</ul>', answer.text, re.S)
    assert listed
    items = [" ".join(re.sub(r"<[^>]+>", "", li).split()) for li in re.findall(r"<li>(.*?)</li>", listed.group(1),
                                                                              re.S)]
    assert items == [
        "A friend’s order on 2026-11-02: pending; your reward is expected on 2026-11-16.",
        f"A friend’s order on 2026-11-01: rewarded with the code {reward_open.code}.",
        "A friend’s order on 2026-10-31: rewarded.",
        "A friend’s order on 2026-10-30: rewarded; your reward code is on its way.",
        "A friend’s order on 2026-10-29: not rewarded: the order was cancelled.",
        "A friend’s order on 2026-10-28: not rewarded: the order was refunded.",
        "A friend’s order on 2026-10-27: not rewarded: this order was not eligible for a reward.",
        "A friend’s order on 2026-10-26: not rewarded: this order was not eligible for a reward.",
        "A friend’s order on 2026-10-25: not rewarded: this order was not eligible for a reward.",
    ]
    # Nothing of the friend, and no fraud control named.
    for secret in ("#F1", "990001", "123.45", "12.34", "FRIEND1", "self", "email", "erased"):
        assert secret not in listed.group(1)
    assert "You have not referred anyone yet." not in answer.text


def test_reward_codes_are_labelled_as_rewards_in_the_codes(client, db, shop: Shop):
    reward = give_code(db, shop, ADA, kind="referral_reward", key="reward")
    welcome = give_code(db, shop, ADA, key="welcome")
    answer = page(client)
    items = {code: " ".join(re.sub(r"<[^>]+>", "", li).split())
             for li in re.findall(r"<li>(.*?)</li>", answer.text, re.S)
             for code in re.findall(r"<code>([^<]+)</code>", li)}
    assert items[reward.code].startswith(f"{reward.code}: 15 % off, your reward for referring a friend Referral reward")
    assert items[welcome.code].startswith(f"{welcome.code}: 10 % off, your welcome gift Welcome code")


def test_referrals_are_the_customers_own_in_this_shop_only(db, rt, shop: Shop):
    other = make_shop_with_programs(db, rt.cipher, OTHER_SHOP)
    referral(db, shop, ADA, 1)
    referral(db, shop, BOB, 2)
    referral(db, other, ADA, 3)  # the same Shopify customer id on another store
    mine = customer_referrals.referrals_of(db, shop.id, ADA)
    assert len(mine) == 1 and mine[0].state == "pending"
    assert len(customer_referrals.referrals_of(db, other.id, ADA)) == 1
    assert customer_referrals.referrals_of(db, shop.id, 123) == []


def test_at_most_fifty_referrals_are_listed(client, db, shop: Shop):
    start = utcnow() - timedelta(days=100)
    for n in range(55):
        referral(db, shop, ADA, n + 1, ordered_at=start + timedelta(days=n))
    assert db.scalar(select(func.count()).select_from(Referral)) == 55
    answer = page(client)
    assert answer.text.count("A friend’s order on") == 50
    newest = (start + timedelta(days=54)).date().isoformat()
    assert f'A friend’s order on <time datetime="{newest}">' in answer.text
    assert (start + timedelta(days=4)).date().isoformat() not in answer.text  # the five oldest are left out


def test_dates_are_the_stores_days(client, db, shop: Shop):
    db.execute(update(Shop).where(Shop.id == shop.id).values(iana_timezone="Pacific/Auckland"))
    db.commit()
    referral(db, shop, ADA, 1, ordered_at=datetime(2026, 11, 2, 20, tzinfo=UTC),
             hold_until=datetime(2026, 11, 16, 20, tzinfo=UTC))
    answer = page(client)
    assert "A friend’s order on <time datetime=\"2026-11-03\">" in answer.text  # already the 3rd in Auckland
    assert 'expected on <time datetime="2026-11-17">' in answer.text


# --- escaping --------------------------------------------------------------------------------------

HOSTILE = '"><img src=x onerror=a()>{{c}}'  # fits a token's 32 characters


def test_a_hostile_link_token_or_reward_code_cannot_inject_html_or_liquid(client, db, rt, shop: Shop):
    program_on(db, shop)
    link, _ = referrals.create_link(db, shop.id, ADA)
    link.token, link.synced_at = HOSTILE, utcnow()  # not a token we draw: stored by something gone wrong
    db.commit()
    reward = give_code(db, shop, ADA, kind="referral_reward", key="hostile-reward")
    db.execute(update(IssuedCode).where(IssuedCode.id == reward.id).values(code=HOSTILE.upper()))
    db.commit()
    referral(db, shop, ADA, 1, "rewarded", reward_code=db.get(IssuedCode, reward.id))
    answer = page(client)
    assert answer.status_code == 200
    assert "{" not in answer.text and "}" not in answer.text
    assert "<img" not in answer.text.lower()
    assert "/r/&#34;&gt;&lt;img src=x onerror=a()&gt;&#123;&#123;c&#125;&#125;" in answer.text  # the field
    # the reward code, in the codes and in the referral it rewarded
    assert answer.text.count("&#34;&gt;&lt;IMG SRC=X ONERROR=A()&gt;&#123;&#123;C&#125;&#125;") == 2
    # in the share links the token is URL-encoded, so nothing of it reads as markup either
    assert "%22%3E%3Cimg%20src%3Dx%20onerror%3Da%28%29%3E%7B%7Bc%7D%7D" in answer.text


def test_a_hostile_path_prefix_gets_no_script(client, db, shop: Shop):
    program_on(db, shop)
    query = proxy_query().replace("path_prefix=%2Fapps%2Foncecode", "path_prefix=%22%3E%3Cscript%3E")
    answer = client.get("/proxy?" + _resigned(query))
    assert answer.status_code == 200
    assert "<script" not in answer.text and "oncecode-link" in answer.text


def test_the_friend_program_value_shown_is_the_programs_current_one(db, rt, shop: Shop):
    program_on(db, shop)
    friend = program_of(db, shop, "referral_friend")
    db.execute(update(Program).where(Program.id == friend.id).values(value=Decimal("12.5")))
    db.commit()
    offer = customer_referrals.referral_offer(db, shop.id)
    assert offer is not None and offer.friend is not None and offer.friend.value == Decimal("12.5")
    assert customer_referrals.referral_offer(db, make_shop_with_programs(db, rt.cipher, OTHER_SHOP).id) is None
