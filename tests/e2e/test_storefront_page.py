"""The customer's page on the store, end to end: devstore's app proxy signs and forwards the storefront
request over HTTP, the app verifies it and answers Liquid, devstore renders it in the store's layout."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import requests
from sqlalchemy import func, select

from app.models import Customer, IssuedCode, Referral, ReferralLink
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, codes, installed_with_welcome, set_program, signup


def storefront(world: World, shop: str = SHOP) -> str:
    return f"{world.store_url}/stores/{shop}/apps/oncecode"


def log_in(world: World, browser: requests.Session, customer_id: int, shop: str = SHOP) -> None:
    answer = browser.post(f"{world.store_url}/_devstore/stores/{shop}/login", json={"customer_id": customer_id},
                          timeout=5)
    assert answer.status_code == 200, answer.text


def test_a_customer_sees_their_welcome_code_on_the_store(world: World):
    installed_with_welcome(world, value=15, expires_after_days=30)
    ada, bob = signup(world, "ada@example.com"), signup(world, "bob@example.com")
    run_worker(world.rt.redis)
    by_customer = {row.customer_id: row for row in codes(world)}
    assert len(by_customer) == 2 and all(row.status == "attached" for row in by_customer.values())
    browser = requests.Session()

    logged_out = browser.get(storefront(world), timeout=10)
    assert logged_out.status_code == 200, logged_out.text  # the app accepted devstore's signature
    assert logged_out.headers["Content-Type"].startswith("text/html")  # Liquid, rendered by the store
    assert f'<a href="{world.store_url}/stores/{SHOP}/account/login">Log in</a>' in logged_out.text
    assert "<code>" not in logged_out.text

    log_in(world, browser, ada["id"])
    page = browser.get(storefront(world), timeout=10)
    assert page.status_code == 200, page.text
    shown = re.findall(r"<code>([^<]+)</code>", page.text)
    with world.rt.db.session_scope() as session:
        ids = {c.shopify_customer_id: c.id for c in session.scalars(select(Customer))}
    assert shown == [by_customer[ids[ada["id"]]].code]  # Ada's code, not Bob's
    assert "15 % off" in page.text and "logged in as ada@example.com" in page.text

    log_in(world, browser, bob["id"])
    assert re.findall(r"<code>([^<]+)</code>", browser.get(storefront(world), timeout=10).text) == [
        by_customer[ids[bob["id"]]].code]


def test_a_hostile_program_name_stays_text_through_the_stores_liquid(world: World):
    installed_with_welcome(world)
    ada = signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    [row] = codes(world)
    with world.rt.db.session_scope() as session:  # a name given after issuance changes nothing shown…
        session.get_one(IssuedCode, row.id).terms = {**row.terms, "name": "<script>x()</script>{{ shop.email }}"}
    set_program(world, name="ignored")  # …the code shows the terms it was issued with
    browser = requests.Session()
    log_in(world, browser, ada["id"])
    page = browser.get(storefront(world), timeout=10)
    assert page.status_code == 200, page.text
    assert "owner@example.com" not in page.text  # devstore's Liquid did not run it
    assert "&lt;script&gt;x()&lt;/script&gt;&#123;&#123; shop.email &#125;&#125;" in page.text
    assert "<script>" not in page.text


def test_a_visitor_cannot_name_another_customer_in_the_storefront_url(world: World):
    # The store forwards the visitor's query and signs it with its own parameters added: a second
    # logged_in_customer_id arrives correctly signed, and the app refuses it rather than pick one.
    installed_with_welcome(world)
    ada, bob = signup(world, "ada@example.com"), signup(world, "bob@example.com")
    run_worker(world.rt.redis)
    browser = requests.Session()
    log_in(world, browser, ada["id"])
    for planted in (f"logged_in_customer_id={bob['id']}", "shop=other.myshopify.com"):
        answer = browser.get(f"{storefront(world)}?{planted}", timeout=10)
        assert answer.status_code == 400 and "appears more than once" in answer.text
        assert "<code>" not in answer.text


def test_a_customer_from_before_the_program_gets_a_link_on_their_first_visit_and_can_copy_it(world: World):
    installed_with_welcome(world)
    ada = signup(world, "ada@example.com")  # the referral program is off: no link at signup
    run_worker(world.rt.redis)
    set_program(world, kind="referral_reward")
    set_program(world, kind="referral_friend")
    with world.rt.db.session_scope() as session:
        assert session.scalar(select(ReferralLink)) is None
    browser = requests.Session()
    log_in(world, browser, ada["id"])

    page = browser.get(storefront(world), timeout=10)
    assert page.status_code == 200, page.text
    with world.rt.db.session_scope() as session:
        link = session.scalars(select(ReferralLink)).one()
        token = link.token
    assert f'value="{world.app_url}/r/{token}"' in page.text
    assert "Friends who open your link get 10 % off" in page.text
    # The Copy button's script comes from the store's own origin, through the proxy, signed by the store.
    [script] = re.findall(r'<script src="([^"]+)" defer>', page.text)
    assert script == f"/stores/{SHOP}/apps/oncecode/copy.js"
    served = browser.get(world.store_url + script, timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"].startswith("text/javascript")
    assert "navigator.clipboard" in served.text

    run_worker(world.rt.redis)  # the link's metafield job, queued by the visit
    customer = next(c for c in world.control("GET", "/customers") if c["id"] == ada["id"])
    assert [m["value"] for m in customer["metafields"] if m["key"] == "referral_link"] == [
        f"{world.app_url}/r/{token}"]
    assert browser.get(storefront(world), timeout=10).text.count(token) >= 1  # the same link again
    with world.rt.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ReferralLink)) == 1


def test_a_customer_sees_their_referrals_on_the_store(world: World):
    installed_with_welcome(world)
    set_program(world, kind="referral_reward")
    ada = signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        advocate = session.scalars(select(Customer).where(Customer.shopify_customer_id == ada["id"])).one()
        ordered = datetime(2026, 11, 2, 15, tzinfo=UTC)
        session.add(Referral(shop_id=advocate.shop_id, advocate_id=advocate.id, friend_code="FRIENDCODE1",
                             friend_customer_id=777, shopify_order_id=9001, order_name="#1042", currency="USD",
                             order_total=Decimal("80.00"), ordered_at=ordered, status="held",
                             hold_until=ordered + timedelta(days=14)))
    browser = requests.Session()
    log_in(world, browser, ada["id"])
    page = browser.get(storefront(world), timeout=10)
    assert page.status_code == 200, page.text
    text = " ".join(re.sub(r"<[^>]+>", "", page.text).split())
    assert "A friend’s order on 2026-11-02: pending; your reward is expected on 2026-11-16." in text
    assert "#1042" not in page.text and "FRIENDCODE1" not in page.text and "80.00" not in page.text
