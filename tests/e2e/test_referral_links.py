"""Referral links end to end: a signup on devstore gets a link written to the customer's metafield, a
retired link leaves it, and ``/r/{token}`` answers without ever calling the Admin API."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
import requests
from rq import Queue
from rq.job import Job
from sqlalchemy import delete, select, update

from app.codes import attachment, referrals
from app.models import Program, ReferralLink
from app.queues import ISSUE_RETRY, QUEUES, enqueue_pool_top_up, enqueue_referral_link, referral_link_job_id
from app.shopify.client import AdminUnavailable
from app.shopify.throttle import ShopBuckets
from devstore.models import MetafieldDefinition
from devstore.pages import DISCOUNT_COOKIE
from tests.conftest import API_KEY, run_worker
from tests.e2e.harness import SHOP, World, install, set_program, signup
from tests.helpers import webhook_headers
from workers.referrals import DEFINITION_FLAG, requeue_stranded_links, sync_referral_link

APP_NAMESPACE = f"app--{API_KEY}"


def installed(world: World, referrals_on: bool = True) -> None:
    install(world)
    run_worker(world.rt.redis)  # set-up: programs, subscriptions, metafield definitions
    if referrals_on:
        set_program(world, kind="referral_reward")


def links(world: World) -> list[ReferralLink]:
    with world.rt.db.session_scope() as session:
        return list(session.scalars(select(ReferralLink).order_by(ReferralLink.id)))


def referral_metafields(world: World, customer_id: int) -> list[dict]:
    customer = next(c for c in world.control("GET", "/customers") if c["id"] == customer_id)
    return [m for m in customer["metafields"] if m["key"] == "referral_link"]


def link_of(world: World, customer_id: int) -> ReferralLink:
    with world.rt.db.session_scope() as session:
        return referrals.find_link(session, world.shop().id, str(customer_id))


def retire(world: World, link_id: int) -> ReferralLink:
    with world.rt.db.session_scope() as session:
        link = session.get_one(ReferralLink, link_id)
        referrals.retire(session, link)
    return link


def queued_jobs(world: World) -> int:
    return sum(Queue(name, connection=world.rt.redis).count for name in QUEUES)


# --- signup ----------------------------------------------------------------------------------------

def test_a_signup_gets_a_link_written_to_the_customer_when_the_referral_program_is_on(world: World):
    installed(world)
    world.control("DELETE", "/graphql_usage")
    customer = signup(world)
    run_worker(world.rt.redis)

    [link] = links(world)
    assert link.status == "active" and link.synced_at is not None and link.last_error is None
    assert referrals.looks_like_token(link.token)
    [metafield] = referral_metafields(world, customer["id"])
    assert metafield == {**metafield, "namespace": APP_NAMESPACE, "type": "url",
                         "value": f"{world.app_url}/r/{link.token}"}
    # The definition (created at set-up) lets the admin, themes and customer accounts read it.
    with world.store.extensions["devstore"].session() as session:
        definition = session.scalars(select(MetafieldDefinition).where(
            MetafieldDefinition.key == "referral_link")).one()
        assert (definition.type, definition.access) == ("url", attachment.ACCESS)
    # One metafieldDefinitionCreate (TAKEN: set-up made it; the shop's first link job checks once), one metafieldsSet.
    assert world.control("GET", "/graphql_usage")["requests"] == 2
    second = signup(world)
    run_worker(world.rt.redis)
    assert referral_metafields(world, second["id"]) and world.control("GET", "/graphql_usage")["requests"] == 3


def test_no_link_at_signup_while_the_referral_program_is_off(world: World):
    installed(world, referrals_on=False)
    set_program(world, kind="referral_friend")  # the friend side alone does not switch links on
    customer = signup(world)
    run_worker(world.rt.redis)
    assert links(world) == [] and referral_metafields(world, customer["id"]) == []


def test_a_replayed_signup_makes_no_second_link(world: World):
    installed(world)
    signup(world)
    run_worker(world.rt.redis)
    [first] = links(world)
    [delivery] = [d for d in world.control("GET", "/deliveries") if d["topic"] == "customers/create"]
    body = json.dumps(delivery["payload"]).encode() if not isinstance(delivery["payload"], str) \
        else delivery["payload"].encode()
    for _ in range(2):  # Shopify's retry under a new event id, twice
        replayed = requests.post(f"{world.app_url}/webhooks", data=body, timeout=5,
                                 headers=webhook_headers("customers/create", SHOP, body))
        assert replayed.status_code == 200
    run_worker(world.rt.redis)
    assert [(link.id, link.token) for link in links(world)] == [(first.id, first.token)]


# --- retiring -------------------------------------------------------------------------------------

def test_retiring_takes_the_link_off_the_customer_and_a_new_link_replaces_it(world: World):
    installed(world)
    customer = signup(world)
    run_worker(world.rt.redis)
    old = link_of(world, customer["id"])

    retire(world, old.id)
    assert enqueue_referral_link(world.rt.redis, world.shop().id, old.id, "retired")
    run_worker(world.rt.redis)
    assert referral_metafields(world, customer["id"]) == []
    [gone] = [link for link in links(world) if link.id == old.id]
    assert gone.status == "retired" and gone.synced_at is not None

    with world.rt.db.session_scope() as session:
        new, created = referrals.create_link(session, world.shop().id, customer["id"])
    assert created
    enqueue_referral_link(world.rt.redis, world.shop().id, new.id, "active")
    run_worker(world.rt.redis)
    assert [m["value"] for m in referral_metafields(world, customer["id"])] == [f"{world.app_url}/r/{new.token}"]


def test_the_jobs_of_a_retirement_and_a_new_link_may_run_in_either_order(world: World):
    installed(world)
    customer = signup(world)
    run_worker(world.rt.redis)
    old = link_of(world, customer["id"])
    retire(world, old.id)
    with world.rt.db.session_scope() as session:
        new, _ = referrals.create_link(session, world.shop().id, customer["id"])
    shop_id = world.shop().id
    # The new link's job first, the retirement's last: the last one must not delete the new link.
    enqueue_referral_link(world.rt.redis, shop_id, new.id, "active")
    run_worker(world.rt.redis)
    enqueue_referral_link(world.rt.redis, shop_id, old.id, "retired")
    run_worker(world.rt.redis)
    assert [m["value"] for m in referral_metafields(world, customer["id"])] == [f"{world.app_url}/r/{new.token}"]
    assert all(link.synced_at is not None for link in links(world))


def test_a_customer_the_store_does_not_have_is_recorded_not_retried(world: World):
    installed(world)
    with world.rt.db.session_scope() as session:
        link, _ = referrals.create_link(session, world.shop().id, 999_999_999)
    enqueue_referral_link(world.rt.redis, world.shop().id, link.id, "active")
    run_worker(world.rt.redis)
    [refused] = links(world)
    assert refused.synced_at is not None and "Owner does not exist" in refused.last_error
    with world.rt.db.session_scope() as session:
        assert referrals.link_json(refused, world.rt.settings, 999_999_999)["metafield"] == "failed"
        assert referrals.stranded(session) == []


def test_a_job_out_of_retries_records_why_on_the_link(world: World):
    installed(world)
    with world.rt.db.session_scope() as session:
        link, _ = referrals.create_link(session, world.shop().id, signup(world)["id"])
    world.control("PUT", "/faults", json={"graphql_5xx": 5})
    # Run outside rq, the job has no retry left: a transient failure is recorded, then raised.
    with pytest.raises(AdminUnavailable):
        sync_referral_link(world.shop().id, link.id)
    [failed] = [row for row in links(world) if row.id == link.id]
    assert failed.synced_at is not None and failed.last_error.startswith("AdminUnavailable")
    with world.rt.db.session_scope() as session:
        assert referrals.stranded(session) == []  # not queued again and again by the sweep
    world.control("PUT", "/faults", json={})
    with world.rt.db.session_scope() as session:  # a new change (here: retiring it) tries again
        referrals.retire(session, session.get_one(ReferralLink, link.id))
    assert sync_referral_link(world.shop().id, link.id) == "removed"
    assert links(world)[0].last_error is None


def test_a_job_for_a_lost_enqueue_is_requeued_by_the_sweep(world: World):
    installed(world)
    customer = signup(world)
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:  # retired, and its job lost (Redis was down, say)
        link = referrals.find_link(session, world.shop().id, str(customer["id"]))
        referrals.retire(session, link)
    assert link.synced_at is None and referral_metafields(world, customer["id"])
    assert requeue_stranded_links() == 0  # too fresh: its job may still be on its way
    with world.rt.db.session_scope() as session:
        session.execute(update(ReferralLink).values(retired_at=link.retired_at - timedelta(minutes=5)))
    assert requeue_stranded_links() == 1
    assert requeue_stranded_links() == 0  # queued already
    run_worker(world.rt.redis)
    assert referral_metafields(world, customer["id"]) == [] and links(world)[0].synced_at is not None


def test_a_shop_installed_before_links_gets_the_definition_from_its_first_link_job(world: World):
    installed(world)
    with world.store.extensions["devstore"].session() as session:
        session.execute(delete(MetafieldDefinition).where(MetafieldDefinition.key == "referral_link"))
    signup(world)
    run_worker(world.rt.redis)
    with world.store.extensions["devstore"].session() as session:
        assert session.scalars(select(MetafieldDefinition.type).where(
            MetafieldDefinition.key == "referral_link")).all() == ["url"]
    assert world.rt.redis.exists(DEFINITION_FLAG.format(shop_id=world.shop().id))


def test_a_throttled_link_job_is_deferred_not_failed(world: World):
    installed(world)
    signup(world)  # queues the link job
    # Empty, and 10 s from the points of a mutation: longer than a job may sleep (2 s).
    ShopBuckets(world.rt.redis).observe(SHOP, {"maximumAvailable": 1000.0, "currentlyAvailable": 0,
                                               "restoreRate": 1.0})
    run_worker(world.rt.redis)
    [link] = links(world)
    job = Job.fetch(referral_link_job_id(link.id, "active"), connection=world.rt.redis)
    assert job.get_status() == "scheduled" and job.retries_left == ISSUE_RETRY.max  # deferred, retries untouched
    assert link.synced_at is None


# --- the landing ------------------------------------------------------------------------------------

def friend_pool(world: World, size: int = 40, low_water: int = 10) -> None:
    """The referral-friend program on and its pool filled on devstore by the real top-up job."""
    state = world.store.extensions["devstore"]
    state.config = replace(state.config, job_seconds=0.2)
    program = set_program(world, kind="referral_friend")
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).where(Program.id == program.id).values(pool_size=size,
                                                                              pool_low_water=low_water))
    enqueue_pool_top_up(world.rt.redis, program.shop_id, program.id)
    run_worker(world.rt.redis)


def test_an_active_link_puts_a_friend_code_in_the_cart_and_never_calls_the_admin_api(world: World):
    installed(world)
    friend_pool(world)
    customer = signup(world)
    run_worker(world.rt.redis)
    link = link_of(world, customer["id"])
    world.control("DELETE", "/graphql_usage")
    jobs = queued_jobs(world)

    browser = requests.Session()
    opened = browser.get(f"{world.app_url}/r/{link.token}", allow_redirects=False, timeout=5)
    discount = f"{world.store_url}/stores/{SHOP}/discount/"
    assert opened.status_code == 302 and opened.headers["Location"].startswith(discount)
    assert opened.headers["Cache-Control"] == "no-store"
    code = opened.headers["Location"][len(discount):]
    landed = browser.get(f"{world.app_url}/r/{link.token}", timeout=5)  # followed: into devstore's cart
    assert landed.status_code == 200 and landed.url == f"{world.store_url}/stores/{SHOP}"
    assert f"Discount code {code} will be applied at checkout" in landed.text  # a code the store knows
    assert browser.cookies.get(DISCOUNT_COOKIE) == code
    other = requests.get(f"{world.app_url}/r/{link.token}", allow_redirects=False, timeout=5)
    assert other.headers["Location"].startswith(discount) and other.headers["Location"] != discount + code

    assert world.control("GET", "/graphql_usage")["requests"] == 0
    assert queued_jobs(world) == jobs  # still above the low-water mark: not even a top-up
    assert link_of(world, customer["id"]).clicks == 3


def test_without_friend_codes_the_link_goes_on_to_the_store(world: World):
    installed(world)  # the referral program on, its friend program off
    customer = signup(world)
    run_worker(world.rt.redis)
    link = link_of(world, customer["id"])
    world.control("DELETE", "/graphql_usage")
    page = requests.get(f"{world.app_url}/r/{link.token}", timeout=5)
    assert page.status_code == 200 and "Referrals are paused" in page.text
    assert f'href="{world.store_url}/stores/{SHOP}"' in page.text
    assert world.control("GET", "/graphql_usage")["requests"] == 0


@pytest.mark.parametrize("state", ["retired", "unknown"])
def test_a_retired_or_unknown_link_never_calls_the_admin_api_either(world: World, state: str):
    installed(world)
    customer = signup(world)
    run_worker(world.rt.redis)
    link = link_of(world, customer["id"])
    if state == "retired":
        retire(world, link.id)
    world.control("DELETE", "/graphql_usage")
    token = link.token if state == "retired" else referrals.new_token()
    page = requests.get(f"{world.app_url}/r/{token}", timeout=5)
    assert page.status_code == (410 if state == "retired" else 404)
    assert "This link is no longer active" in page.text
    assert world.control("GET", "/graphql_usage")["requests"] == 0
