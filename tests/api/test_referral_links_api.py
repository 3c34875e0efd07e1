"""Referral links in the JSON API (App Bridge session token, scoped to its shop)."""

from __future__ import annotations

import pytest
from rq.job import Job

from app.models import ReferralLink
from app.queues import referral_link_job_id
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, install, set_program, signup
from tests.helpers import make_shop_with_programs, session_token

MAX = 2**63 - 1


def auth(shop: str = SHOP) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(shop)}"}


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def create(client, customer_id: object, shop: str = SHOP):  # type: ignore[no-untyped-def]
    return client.post("/api/referral-links", json={"customer_id": customer_id}, headers=auth(shop))


def test_create_then_create_again_gives_the_same_link(client, rt, shop):
    made = create(client, 42)
    assert made.status_code == 201 and made.headers["Location"] == f"/api/referral-links/{made.json['id']}"
    assert made.json["url"] == f"https://oncecode.test/r/{made.json['token']}"
    assert (made.json["status"], made.json["customer_id"], made.json["clicks"], made.json["metafield"]) == (
        "active", 42, 0, "pending")
    assert Job.exists(referral_link_job_id(made.json["id"], "active"), connection=rt.redis)  # on its way
    again = create(client, "gid://shopify/Customer/42")
    assert again.status_code == 200 and again.json["token"] == made.json["token"]


def test_the_largest_shopify_id_is_accepted(client, shop):
    assert create(client, MAX).status_code == 201
    assert create(client, str(MAX)).json["customer_id"] == MAX


@pytest.mark.parametrize("customer_id", [0, -3, MAX + 1, str(MAX + 1), "abc", "", None, 4.5, True, [42], {"id": 1},
                                         "gid://shopify/Order/42"])
def test_a_bad_customer_id_is_a_400_naming_the_rule(client, db, shop, customer_id):
    answer = create(client, customer_id)
    assert answer.status_code == 400
    assert answer.json["error"].startswith(f"customer_id must be a Shopify customer id (a number from 1 to {MAX} ")
    assert db.query(ReferralLink).count() == 0


@pytest.mark.parametrize(("body", "complaint"), [
    (b"not json", "the body must be a JSON object"),
    (b'{"customer_id": "\\u0000"}', "must not contain NUL characters"),
    (b"[42]", "the body must be a JSON object"),
    (b"{}", "customer_id is required"),
    (b'{"customer_id": 42, "token": "mine"}', "unknown field token"),
])
def test_a_bad_body_is_a_400(client, shop, body, complaint):
    answer = client.post("/api/referral-links", data=body, headers={**auth(), "Content-Type": "application/json"})
    assert answer.status_code == 400 and complaint in answer.json["error"]


def test_list_filter_page_and_show(client, shop):
    ids = [create(client, n).json["id"] for n in (1, 2, 3)]
    client.post(f"/api/referral-links/{ids[1]}/retire", headers=auth())
    listed = client.get("/api/referral-links", headers=auth()).json
    assert [link["id"] for link in listed["referral_links"]] == ids[::-1] and listed["next_before"] is None
    active = client.get("/api/referral-links?status=active", headers=auth()).json["referral_links"]
    assert [link["customer_id"] for link in active] == [3, 1]
    mine = client.get("/api/referral-links?customer_id=2", headers=auth()).json["referral_links"]
    assert [link["status"] for link in mine] == ["retired"]
    page = client.get("/api/referral-links?limit=2", headers=auth()).json
    assert len(page["referral_links"]) == 2 and page["next_before"] == ids[1]
    rest = client.get(f"/api/referral-links?limit=2&before={page['next_before']}", headers=auth()).json
    assert [link["id"] for link in rest["referral_links"]] == [ids[0]]
    shown = client.get(f"/api/referral-links/{ids[0]}", headers=auth()).json
    assert shown["customer_id"] == 1 and shown["status"] == "active"


@pytest.mark.parametrize(("query", "complaint"), [
    ("status=open", "status must be one of active, retired, not 'open'"),
    ("limit=0", "limit must be a whole number from 1 to 200"),
    ("limit=201", "limit must be a whole number from 1 to 200"),
    ("limit=x", "limit must be a whole number from 1 to 200"),
    ("before=-1", "before must be an id: a whole number from 1 to 2147483647"),
    ("before=2147483648", "before must be an id"),
    ("customer_id=0", "customer_id must be a Shopify customer id"),
    (f"customer_id={MAX + 1}", "customer_id must be a Shopify customer id"),
])
def test_bad_list_filters_are_400s(client, shop, query, complaint):
    answer = client.get(f"/api/referral-links?{query}", headers=auth())
    assert answer.status_code == 400 and complaint in answer.json["error"]


def test_retire_is_idempotent_and_queues_the_removal(client, rt, shop):
    made = create(client, 42).json
    retired = client.post(f"/api/referral-links/{made['id']}/retire", headers=auth())
    assert retired.status_code == 200 and retired.json["status"] == "retired" and retired.json["retired_at"]
    assert Job.exists(referral_link_job_id(made["id"], "retired"), connection=rt.redis)
    again = client.post(f"/api/referral-links/{made['id']}/retire", headers=auth())
    assert again.status_code == 200 and again.json["retired_at"] == retired.json["retired_at"]
    fresh = create(client, 42)
    assert fresh.status_code == 201 and fresh.json["token"] != made["token"]


@pytest.mark.parametrize("path", ["/api/referral-links/99999999999", "/api/referral-links/²"])
def test_an_id_out_of_range_in_the_path_is_not_a_500(client, shop, path):
    assert client.get(path, headers=auth()).status_code in (400, 404)
    assert client.post(path + "/retire", headers=auth()).status_code in (400, 404)


def test_another_shops_links_are_not_found(client, db, rt, shop):
    make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    theirs = create(client, 42, shop="other.myshopify.com").json
    assert client.get(f"/api/referral-links/{theirs['id']}", headers=auth()).status_code == 404
    assert client.post(f"/api/referral-links/{theirs['id']}/retire", headers=auth()).status_code == 404
    assert client.get("/api/referral-links", headers=auth()).json["referral_links"] == []


def test_no_session_token_is_a_401(client, shop):
    assert client.get("/api/referral-links").status_code == 401
    assert client.post("/api/referral-links", json={"customer_id": 42}).status_code == 401


def test_a_link_made_through_the_api_reaches_the_customer_on_devstore_and_leaves_when_retired(world: World):
    install(world)
    run_worker(world.rt.redis)
    set_program(world, kind="welcome", active=False)
    customer = signup(world)  # the referral program is off: no link at signup
    api = world.app.test_client()
    made = create(api, customer["id"]).json
    run_worker(world.rt.redis)

    def shown() -> list[str]:
        found = next(c for c in world.control("GET", "/customers") if c["id"] == customer["id"])
        return [m["value"] for m in found["metafields"] if m["key"] == "referral_link"]

    assert shown() == [f"{world.app_url}/r/{made['token']}"]
    assert api.get(f"/api/referral-links/{made['id']}", headers=auth()).json["metafield"] == "written"
    api.post(f"/api/referral-links/{made['id']}/retire", headers=auth())
    run_worker(world.rt.redis)
    assert shown() == []
    assert api.get(f"/api/referral-links/{made['id']}", headers=auth()).json["metafield"] == "removed"
