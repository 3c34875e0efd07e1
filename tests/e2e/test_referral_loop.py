"""The whole referral loop on devstore over real HTTP: an advocate's link puts a friend code in a
friend's cart, the friend's paid order becomes a held referral, the hold ends and the advocate's
reward code is created on the store, locked to them and attached; the storefront page shows it.
A friend order cancelled within the hold earns nothing; a self-referral is blocked and recorded."""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests
from sqlalchemy import select, update

from app.codes.catch_up import CatchUp
from app.db import utcnow
from app.models import IssuedCode, Program, Referral, WebhookEvent
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, set_program, signup, wait_until
from tests.e2e.test_referral_links import friend_pool, installed, link_of
from tests.e2e.test_storefront_page import log_in, storefront
from tests.helpers import webhook_headers
from workers.referrals import release_rewards


def friend_checkout(world: World, link_token: str, friend_id: int | None, email: str = "friend@example.com") -> dict:
    """A friend opens the link (the store keeps the code for checkout), then places the order the store's
    page offers, with the code from the cart; the order as devstore reports it."""
    browser = requests.Session()
    landed = browser.get(f"{world.app_url}/r/{link_token}", timeout=5)
    assert landed.status_code == 200 and landed.url == f"{world.store_url}/stores/{SHOP}"
    [code] = re.findall(r'name="codes" value="([^"]+)"', landed.text)  # the order form, filled from the cart
    body: dict = {"amount": "80.00", "codes": [code]}
    body.update({"customer_id": friend_id} if friend_id else {"email": email})
    placed = requests.post(f"{world.store_url}/_devstore/stores/{SHOP}/orders", json=body, timeout=10)
    assert placed.status_code == 201, placed.text
    return placed.json() | {"friend_code": code}


def referrals_of(world: World) -> list[Referral]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(Referral).order_by(Referral.id)))


def end_holds(world: World) -> None:
    """Time passes: every held referral's hold ends now."""
    with world.rt.db.session_scope() as session:
        session.execute(update(Referral).where(Referral.status == "held").values(hold_until=utcnow()))


def test_link_friend_code_order_hold_and_the_advocates_reward_on_the_store_and_the_storefront_page(world: World):
    installed(world)  # the referral program (its reward side) on
    set_program(world, kind="referral_reward", value=20, value_type="percentage")
    friend_pool(world)
    advocate = signup(world, "ada@example.com")
    friend = signup(world, "bob@example.com")
    run_worker(world.rt.redis)
    link = link_of(world, advocate["id"])

    order = friend_checkout(world, link.token, friend["id"])
    assert order["discount_codes"][0]["code"] == order["friend_code"]  # the store took the friend code
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)

    [referral] = referrals_of(world)
    assert (referral.status, referral.friend_code, referral.shopify_order_id) == (
        "held", order["friend_code"], order["id"])
    assert referral.friend_customer_id == friend["id"] and referral.link_id == link.id
    assert release_rewards() == {"rewarded": 0, "voided": 0, "reserved": 0}  # the hold is running

    end_holds(world)
    assert release_rewards() == {"rewarded": 1, "voided": 0, "reserved": 1}
    run_worker(world.rt.redis)  # the issuing job: create, attach

    [referral] = referrals_of(world)
    with world.rt.db.session_scope() as session:
        reward = session.get_one(IssuedCode, referral.reward_code_id)
    assert referral.status == "rewarded" and reward.status == "attached"
    [discount] = [d for d in world.control("GET", "/discounts") if d["admin_graphql_api_id"] == reward.discount_gid]
    assert discount["customer_ids"] == [advocate["id"]]  # locked to the advocate
    assert discount["usage_limit"] == 1 and discount["value"] == "0.2000"
    customer = next(c for c in world.control("GET", "/customers") if c["id"] == advocate["id"])
    assert "oncecode-reward" in customer["tags"]
    assert {m["key"]: m["value"] for m in customer["metafields"]}["reward_code"] == reward.code

    # The job again, and the issuing job again, change nothing.
    release_rewards()
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        assert session.scalars(select(IssuedCode.id).where(IssuedCode.program_id == reward.program_id)).all() == [
            reward.id]

    browser = requests.Session()
    log_in(world, browser, advocate["id"])
    page = browser.get(storefront(world), timeout=10)
    assert page.status_code == 200 and reward.code in re.findall(r"<code>([^<]+)</code>", page.text)


@pytest.mark.parametrize("webhooks_lost", [False, True], ids=["orders/cancelled", "lost, found by catch-up"])
def test_a_friend_order_cancelled_within_the_hold_earns_nothing(world: World, webhooks_lost: bool):
    installed(world)
    friend_pool(world)
    advocate = signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    order = friend_checkout(world, link_of(world, advocate["id"]).token, None, email="carol@example.com")
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)
    assert [r.status for r in referrals_of(world)] == ["held"]

    if webhooks_lost:
        world.control("PUT", "/faults", json={"drop": ["orders/cancelled", "refunds/create"]})
    world.control("POST", f"/orders/{order['id']}/cancel", json={"reason": "customer"})
    if webhooks_lost:
        run_worker(world.rt.redis)
        assert [r.status for r in referrals_of(world)] == ["held"]  # nothing came: the app cannot know yet
        shop = world.shop()
        assert CatchUp(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop.id).page().cancellations == 1
    else:
        world.wait_delivered("orders/cancelled")
        run_worker(world.rt.redis)
    [referral] = referrals_of(world)
    assert (referral.status, referral.reason) == ("voided", "order_cancelled")
    end_holds(world)
    assert release_rewards()["rewarded"] == 0


def test_an_advocate_using_their_own_link_is_blocked_and_the_block_is_recorded(world: World):
    installed(world)
    friend_pool(world)
    advocate = signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    friend_checkout(world, link_of(world, advocate["id"]).token, advocate["id"])
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)
    [referral] = referrals_of(world)
    assert (referral.status, referral.reason) == ("blocked", "self_referral")


def advocate_without_hold(world: World) -> dict:
    """An installed shop whose rewards have no hold (decided at reconciliation), its friend pool, and an
    advocate who signed up (ada@example.com)."""
    installed(world)
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).where(Program.kind == "referral_reward").values(hold_days=0))
    friend_pool(world)
    advocate = signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    return advocate


def test_the_clis_catch_up_checks_and_rewards_as_the_workers_does(world: World):
    """``reconcile now --here`` (an operator's catch-up in their terminal) fingerprints buyers' emails
    for the same-email check and queues the reward codes it reserves, as the worker's catch-up does."""
    # The suite's settings have no fingerprint key (no fingerprints, no same-email check): give it one.
    world.rt.settings = replace(world.rt.settings, email_hash_key="fingerprints-" + "k" * 32)
    advocate = advocate_without_hold(world)
    world.control("PUT", "/faults", json={"drop": ["orders/paid"]})
    token = link_of(world, advocate["id"]).token
    same = friend_checkout(world, token, None, email="Ada@Example.com")  # the advocate, as a guest
    other = friend_checkout(world, token, None, email="fay@example.com")

    result = world.app.test_cli_runner().invoke(args=["reconcile", "now", SHOP, "--here"])
    assert result.exit_code == 0 and "2 missed by webhooks" in result.output, result.output
    by_order = {r.shopify_order_id: (r.status, r.reason) for r in referrals_of(world)}
    assert by_order == {same["id"]: ("blocked", "same_email"), other["id"]: ("rewarded", None)}
    run_worker(world.rt.redis)  # the issuance the CLI queued
    with world.rt.db.session_scope() as session:
        rewards = session.scalars(select(IssuedCode).join(Program).where(Program.kind == "referral_reward")).all()
        assert [(c.status, c.customer_id is not None) for c in rewards] == [("attached", True)]


def test_duplicate_and_concurrent_deliveries_to_four_worker_processes_and_catch_up_reward_once(world: World, workers):
    advocate = advocate_without_hold(world)
    world.control("PUT", "/faults", json={"duplicate": True})  # devstore delivers every orders/paid twice
    friend_checkout(world, link_of(world, advocate["id"]).token, None, email="dan@example.com")
    deliveries = world.wait_delivered("orders/paid", count=2)
    pool = workers(4)
    bodies = [json.dumps(d["payload"]).encode() if not isinstance(d["payload"], str) else d["payload"].encode()
              for d in deliveries]

    def send(body: bytes) -> int:
        headers = webhook_headers("orders/paid", SHOP, body, event_id=str(uuid.uuid4()))
        return requests.post(f"{world.app_url}/webhooks", data=body, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as senders:  # replays under new event ids, all at once
        assert set(senders.map(send, bodies * 4)) == {200}

    expected = len({d["event_id"] for d in deliveries}) + 8  # the store's duplicate shares its event id

    def rewarded() -> bool:
        with world.rt.db.session_scope() as session:
            events = session.scalars(select(WebhookEvent).where(WebhookEvent.topic == "orders/paid")).all()
            codes = session.scalars(select(IssuedCode).join(Program).where(Program.kind == "referral_reward")).all()
            return (len(events) == expected and all(e.status == "processed" for e in events)
                    and [c.status for c in codes] == ["attached"])

    wait_until(rewarded, timeout=30, what="every delivery handled and the reward attached")
    pool.stop()
    shop = world.shop()
    assert CatchUp(world.rt.db, world.rt.admin_client(shop.id, shop.domain), shop.id).page().finished
    [referral] = referrals_of(world)
    assert referral.status == "rewarded"
    with world.rt.db.session_scope() as session:
        rewards = session.scalars(select(IssuedCode).join(Program).where(Program.kind == "referral_reward")).all()
        assert len(rewards) == 1
    locked = [d for d in world.control("GET", "/discounts") if d["customer_ids"] == [advocate["id"]]]
    assert len(locked) == 1  # the advocate's reward, once on the store
