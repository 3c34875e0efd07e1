"""A revoked code is taken off its customer: the metafields move on to their other open code of the kind
(or go), and the kind's tag goes with the last open code. Through devstore over HTTP, jobs in a real worker."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from app.codes import issuance
from app.codes.issuance import Issuer, ShopRef
from app.db import utcnow
from app.models import IssuedCode, Program
from app.shopify import client
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, World, installed_with_welcome
from tests.helpers import session_token
from workers.codes import revoke_code
from workers.maintenance import requeue_stranded_codes


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(SHOP)}"}


@pytest.fixture
def api(world: World):  # type: ignore[no-untyped-def]
    installed_with_welcome(world)
    return world.app.test_client()


def program_id(world: World, kind: str) -> int:
    with world.rt.db.session_scope() as session:
        return session.scalars(select(Program.id).where(Program.kind == kind)).one()


def customer_with_welcome_code(world: World) -> dict[str, Any]:
    """A customer signs up and gets their welcome code, attached."""
    customer = world.control("POST", "/customers", json={"email": "ann@example.com"})
    world.wait_delivered("customers/create")
    run_worker(world.rt.redis)
    return customer


def issue(api, world: World, customer: dict[str, Any], kind: str = "welcome") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    answered = api.post("/api/codes", json={"program_id": program_id(world, kind), "customer_id": customer["id"]},
                        headers=auth())
    assert answered.status_code == 202, answered.json
    run_worker(world.rt.redis)
    code = api.get(f"/api/codes/{answered.json['id']}", headers=auth()).json
    assert code["status"] == "attached"
    return code


def welcome_codes(api) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return sorted(api.get("/api/codes", headers=auth()).json["codes"], key=lambda c: c["id"])


def revoke(api, world: World, code: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    assert api.post(f"/api/codes/{code['id']}/revoke", headers=auth()).status_code == 202
    run_worker(world.rt.redis)


def on_customer(world: World, customer: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """What the store shows on the customer: their metafields (key → value) and tags."""
    [found] = [c for c in world.control("GET", "/customers") if c["id"] == customer["id"]]
    return {m["key"]: m["value"] for m in found["metafields"]}, sorted(found["tags"])


def test_revoking_the_shown_code_shows_the_customers_other_open_code(api, world: World):
    customer = customer_with_welcome_code(world)
    [first] = welcome_codes(api)
    second = issue(api, world, customer)
    fields, tags = on_customer(world, customer)
    assert fields["welcome_code"] == second["code"] and tags == ["oncecode-welcome"]

    revoke(api, world, second)
    fields, tags = on_customer(world, customer)
    assert fields["welcome_code"] == first["code"]
    assert fields["welcome_code_url"].endswith(f"/discount/{first['code']}")
    assert fields["welcome_code_expires_at"].startswith(first["expires_at"][:19])
    assert tags == ["oncecode-welcome"]  # another open welcome code is still theirs

    revoke(api, world, first)
    fields, tags = on_customer(world, customer)
    assert "welcome_code" not in fields and "welcome_code_url" not in fields and "welcome_code_expires_at" not in fields
    assert tags == []


def test_revoking_an_older_code_leaves_the_newer_one_shown(api, world: World):
    customer = customer_with_welcome_code(world)
    [first] = welcome_codes(api)
    second = issue(api, world, customer)
    revoke(api, world, first)
    fields, tags = on_customer(world, customer)
    assert fields["welcome_code"] == second["code"] and tags == ["oncecode-welcome"]


def test_another_kinds_code_keeps_its_own_metafields_and_tag(api, world: World):
    customer = customer_with_welcome_code(world)
    [welcome] = welcome_codes(api)
    reward = issue(api, world, customer, kind="referral_reward")
    revoke(api, world, welcome)
    fields, tags = on_customer(world, customer)
    assert "welcome_code" not in fields and fields["reward_code"] == reward["code"]
    assert tags == ["oncecode-reward"]


def test_detaching_is_recorded_and_a_second_run_calls_nothing(api, world: World):
    customer = customer_with_welcome_code(world)
    [code] = welcome_codes(api)
    revoke(api, world, code)
    with world.rt.db.session_scope() as session:
        row = session.get_one(IssuedCode, code["id"])
        assert row.deactivated_at is not None and row.detached_at is not None
    world.control("DELETE", "/graphql_usage")
    assert revoke_code(world.shop().id, code["id"]) == "deactivated already"
    assert world.control("GET", "/graphql_usage")["requests"] == 0
    assert api.post(f"/api/codes/{code['id']}/revoke", headers=auth()).status_code == 200  # nothing left to do
    assert on_customer(world, customer) == ({}, [])


def test_a_lost_detach_is_found_by_the_stranded_sweep(api, world: World):
    customer = customer_with_welcome_code(world)
    [code] = welcome_codes(api)
    with world.rt.db.session_scope() as session:  # revoked and deactivated, then the worker died
        row = issuance.request_revoke(session, world.shop().id, code["id"])
        row.deactivated_at = utcnow()
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).values(updated_at=utcnow() - issuance.STRANDED_AFTER * 2))
    assert requeue_stranded_codes()["revoke"] == 1
    run_worker(world.rt.redis)
    assert on_customer(world, customer) == ({}, [])


def test_a_customer_deleted_on_the_store_is_recorded_not_retried_forever(api, world: World, monkeypatch):
    monkeypatch.setattr(client, "RETRY_DELAYS", (0, 0))
    customer_with_welcome_code(world)
    [code] = welcome_codes(api)
    with world.store.extensions["devstore"].session() as session:
        from devstore.models import Customer

        session.delete(session.scalars(select(Customer)).one())
    revoke(api, world, code)
    with world.rt.db.session_scope() as session:
        row = session.get_one(IssuedCode, code["id"])
        assert row.detached_at is not None and "refused to take the code off its customer" in row.last_error


def test_a_code_revoked_while_its_metafields_were_on_their_way_is_taken_off_again(api, world: World):
    set_program_active(world, False)
    customer = world.control("POST", "/customers", json={"email": "bo@example.com"})
    world.wait_delivered("customers/create")
    answered = api.post("/api/codes", json={"program_id": program_id(world, "welcome"),
                                            "customer_id": customer["id"]}, headers=auth())
    shop = world.shop()
    issuer = Issuer(world.rt.db, world.rt.settings, world.rt.admin_client(shop.id, shop.domain),
                    ShopRef(shop.id, shop.domain), "test")
    [row] = issuer.load([answered.json["id"]])
    row = issuer.create(row)
    with world.rt.db.session_scope() as session:  # the merchant revokes it while the job is attaching
        issuance.request_revoke(session, shop.id, row.id)
    assert revoke_code(shop.id, row.id) == "deactivated"  # nothing on the customer yet to take off
    issuer.attach([row])  # the metafields and the tag land anyway: the row says so
    with world.rt.db.session_scope() as session:
        landed = session.get_one(IssuedCode, row.id)
        assert landed.status == "revoked" and landed.metafields_at is not None and landed.detached_at is None
    assert on_customer(world, customer)[1] == ["oncecode-welcome"]
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).values(updated_at=utcnow() - issuance.STRANDED_AFTER * 2))
    assert requeue_stranded_codes()["revoke"] == 1  # the sweep finds it
    run_worker(world.rt.redis)
    assert on_customer(world, customer) == ({}, [])


def set_program_active(world: World, active: bool) -> None:
    with world.rt.db.session_scope() as session:
        session.execute(update(Program).where(Program.kind == "welcome").values(active=active))
