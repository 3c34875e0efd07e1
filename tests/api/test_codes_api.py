"""The codes API (App Bridge session token, scoped to its shop), with devstore as the store."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import select, update

from app.models import IssuedCode, Program
from app.shopify import client
from app.shopify.client import AdminUnavailable
from tests.conftest import run_worker
from tests.e2e.harness import OTHER_SHOP, SHOP, World, installed_with_welcome
from tests.helpers import session_token
from workers.codes import issue_codes


def auth(shop: str = SHOP) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(shop)}"}


@pytest.fixture
def api(world: World):  # type: ignore[no-untyped-def]
    installed_with_welcome(world)
    return world.app.test_client()


def welcome_id(world: World) -> int:
    with world.rt.db.session_scope() as session:
        return session.scalars(select(Program.id).where(Program.kind == "welcome",
                                                        Program.shop_id == world.shop().id)).one()


def store_customer(world: World) -> dict:
    """A customer signs up on the store (and its customers/create has reached the app)."""
    customer = world.control("POST", "/customers", json={"email": "picked@example.com"})
    world.wait_delivered("customers/create")
    return customer


def issue(api, world: World, customer_id: object, **extra: object):  # type: ignore[no-untyped-def]
    return api.post("/api/codes", json={"program_id": welcome_id(world), "customer_id": customer_id, **extra},
                    headers=auth())


def test_a_merchant_issues_a_code_by_hand_and_it_reaches_the_customer(api, world: World):
    customer = store_customer(world)
    run_worker(world.rt.redis)  # the signup's own welcome code
    answered = issue(api, world, f"gid://shopify/Customer/{customer['id']}")
    assert answered.status_code == 202 and answered.headers["Location"] == f"/api/codes/{answered.json['id']}"
    assert answered.json["status"] == "reserved" and answered.json["customer_id"] == customer["id"]
    run_worker(world.rt.redis)

    shown = api.get(f"/api/codes/{answered.json['id']}", headers=auth()).json
    assert shown["status"] == "attached" and shown["discount_id"].startswith("gid://shopify/DiscountCodeNode/")
    assert shown["url"] == f"{world.store_url}/stores/{SHOP}/discount/{shown['code']}"
    assert shown["program"]["kind"] == "welcome" and shown["locked_to_customer"] is True
    assert len(world.control("GET", "/discounts")) == 2  # the welcome code and this one


def test_the_same_idempotency_key_issues_once(api, world: World):
    customer = store_customer(world)
    first = api.post("/api/codes", json={"program_id": welcome_id(world), "customer_id": customer["id"]},
                     headers={**auth(), "Idempotency-Key": "order-1001-apology"})
    again = api.post("/api/codes", json={"program_id": welcome_id(world), "customer_id": customer["id"]},
                     headers={**auth(), "Idempotency-Key": "order-1001-apology"})
    assert (first.status_code, again.status_code) == (202, 200) and first.json["id"] == again.json["id"]
    other = issue(api, world, customer["id"])
    assert other.status_code == 202 and other.json["id"] != first.json["id"]


@pytest.mark.parametrize(("body", "complaint"), [
    ("not json", "JSON object"),
    ({"customer_id": 5}, "program_id"),
    ({"program_id": "1", "customer_id": 5}, "program_id"),
    ({"program_id": 1, "customer_id": "gid://shopify/Order/5"}, "customer_id"),
    ({"program_id": 1, "customer_id": -3}, "customer_id"),
    ({"program_id": 1, "customer_id": 5, "value": 99}, "unknown field value"),
    ({"program_id": 1, "customer_id": 5, "idempotency_key": ""}, "idempotency key"),
    ({"program_id": 1, "customer_id": 5, "idempotency_key": "k" * 101},
     "the idempotency key must be a string of 1 to 100 characters"),  # the CLI's --key takes the same
])
def test_bad_requests_name_the_problem_and_change_nothing(api, world: World, body, complaint):
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    answered = api.post("/api/codes", headers=auth(), **kwargs)
    assert answered.status_code == 400 and complaint in answered.json["error"]
    with world.rt.db.session_scope() as session:
        assert session.scalars(select(IssuedCode)).all() == []


def test_another_shops_program_or_code_is_not_found(api, world: World):
    installed_with_welcome(world, shop=OTHER_SHOP)
    customer = store_customer(world)
    run_worker(world.rt.redis)
    mine = api.get("/api/codes", headers=auth()).json["codes"][0]
    assert api.get(f"/api/codes/{mine['id']}", headers=auth(OTHER_SHOP)).status_code == 404
    assert api.post(f"/api/codes/{mine['id']}/revoke", headers=auth(OTHER_SHOP)).status_code == 404
    assert api.get("/api/codes", headers=auth(OTHER_SHOP)).json["codes"] == []
    refused = api.post("/api/codes", json={"program_id": welcome_id(world), "customer_id": customer["id"]},
                       headers=auth(OTHER_SHOP))
    assert refused.status_code == 404 and "no program" in refused.json["error"]


def test_no_session_token_no_codes(api):
    assert api.get("/api/codes").status_code == 401
    assert api.post("/api/codes", json={}).status_code == 401


def test_the_list_filters_and_pages(api, world: World):
    customers = [world.control("POST", "/customers", json={"email": f"c{n}@example.com"}) for n in range(5)]
    world.wait_delivered("customers/create", count=5)
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).where(IssuedCode.id == 2).values(status="failed", last_error="boom"))

    page = api.get("/api/codes?limit=2", headers=auth()).json
    assert [c["id"] for c in page["codes"]] == [5, 4] and page["next_before"] == 4
    rest = api.get(f"/api/codes?limit=10&before={page['next_before']}", headers=auth()).json
    assert [c["id"] for c in rest["codes"]] == [3, 2, 1] and rest["next_before"] is None
    failed = api.get("/api/codes?status=failed", headers=auth()).json["codes"]
    assert [(c["id"], c["error"]) for c in failed] == [(2, "boom")]
    theirs = api.get(f"/api/codes?customer_id={customers[0]['id']}", headers=auth()).json["codes"]
    assert [c["customer_id"] for c in theirs] == [customers[0]["id"]]
    assert api.get("/api/codes?status=lost", headers=auth()).status_code == 400
    assert "limit" in api.get("/api/codes?limit=1000", headers=auth()).json["error"]


def test_a_revoked_code_stops_working_on_the_store(api, world: World):
    customer = store_customer(world)
    run_worker(world.rt.redis)
    [code] = api.get("/api/codes", headers=auth()).json["codes"]
    answered = api.post(f"/api/codes/{code['id']}/revoke", headers=auth())
    assert answered.status_code == 202 and answered.json["status"] == "revoked"
    run_worker(world.rt.redis)

    [discount] = world.control("GET", "/discounts")
    assert discount["deactivated_at"] is not None
    refused = requests.post(f"{world.store_url}/_devstore/stores/{SHOP}/orders", timeout=5,
                            json={"amount": "40.00", "codes": [code["code"]], "customer_id": customer["id"]})
    assert refused.status_code == 409 and refused.json()["rule"] == "deactivated"
    assert api.post(f"/api/codes/{code['id']}/revoke", headers=auth()).status_code == 200  # nothing more to do


def test_a_redeemed_code_cannot_be_revoked_and_only_failed_codes_are_retried(api, world: World):
    store_customer(world)
    run_worker(world.rt.redis)
    [code] = api.get("/api/codes", headers=auth()).json["codes"]
    retry = api.post(f"/api/codes/{code['id']}/retry", headers=auth())
    assert retry.status_code == 409 and "only failed codes" in retry.json["error"]
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).values(status="redeemed"))
    refused = api.post(f"/api/codes/{code['id']}/revoke", headers=auth())
    assert refused.status_code == 409 and "redeemed" in refused.json["error"]


def test_a_code_that_failed_for_good_is_retried_once_the_cause_is_fixed(api, world: World, monkeypatch):
    monkeypatch.setattr(client, "RETRY_DELAYS", (0, 0))
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).values(active=False))
    customer = store_customer(world)
    answered = issue(api, world, customer["id"])
    world.control("PUT", "/faults", json={"graphql_5xx": 3})  # the store is down for the job's last attempt
    with pytest.raises(AdminUnavailable):
        issue_codes(world.shop().id, 0)  # outside rq: no retry left
    failed = api.get(f"/api/codes/{answered.json['id']}", headers=auth()).json
    assert failed["status"] == "failed" and "503" in failed["error"]
    assert api.get("/api/codes?status=failed", headers=auth()).json["codes"][0]["id"] == failed["id"]

    retried = api.post(f"/api/codes/{failed['id']}/retry", headers=auth())
    assert retried.status_code == 202 and retried.json["status"] == "reserved" and retried.json["error"] is None
    run_worker(world.rt.redis)
    assert api.get(f"/api/codes/{failed['id']}", headers=auth()).json["status"] == "attached"
    assert len(world.control("GET", "/discounts")) == 1
