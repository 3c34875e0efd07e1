"""Referral settings and the referral list in the JSON API (session token, scoped to its shop)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from app.models import Program
from tests.api.test_programs_api import OTHER, SHOP, auth, install
from tests.codes.test_referral_list import a_referral
from tests.codes.test_referral_settings import DEFAULTS
from tests.helpers import program_of


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return install(db, rt, SHOP)


ENDPOINTS = [("GET", "/api/referrals/settings"), ("PATCH", "/api/referrals/settings"), ("GET", "/api/referrals"),
             ("GET", "/api/referrals/1")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_needs_a_session_token(client, shop, method, path):
    assert client.open(path, method=method, json={"hold_days": 1}).status_code == 401


# --- settings ------------------------------------------------------------------------------------


def test_settings_show_and_change(client, db, shop):
    shown = client.get("/api/referrals/settings", headers=auth())
    assert shown.status_code == 200 and shown.get_json() == DEFAULTS
    changed = client.patch("/api/referrals/settings", headers=auth(),
                           json={"hold_days": 0, "first_order_only": False, "pool_size": 2000,
                                 "friend_codes_per_link_per_day": 0})
    assert changed.status_code == 200
    assert changed.get_json() == DEFAULTS | {"hold_days": 0, "first_order_only": False, "pool_size": 2000,
                                             "friend_codes_per_link_per_day": 0}
    assert program_of(db, shop, "referral_reward").hold_days == 0
    assert program_of(db, shop, "referral_friend").pool_size == 2000
    # The older doors see the same columns.
    assert client.get("/api/referrals/pool", headers=auth()).get_json()["settings"]["size"] == 2000
    assert client.get("/api/referrals/caps", headers=auth()).get_json()["caps"]["per_link_per_day"] == 0


def test_a_bad_change_is_a_400_naming_every_problem_and_changes_nothing(client, db, shop):
    refused = client.patch("/api/referrals/settings", headers=auth(),
                           json={"hold_days": 7, "void_refund_percent": True, "block_same_email": 1,
                                 "pool_low_water": 5000, "colour": "blue"})
    assert refused.status_code == 400
    error = refused.get_json()["error"]
    for problem in ("unknown setting 'colour'", "void_refund_percent must be a whole number from 0",
                    "block_same_email must be true or false, not 1",
                    "pool_low_water must be 0 or more and less than the pool size (1000), not 5000"):
        assert problem in error
    assert client.get("/api/referrals/settings", headers=auth()).get_json() == DEFAULTS


@pytest.mark.parametrize("body", [b"[1]", b"7", b"not json", b'"hold_days"', b""])
def test_a_body_that_is_not_an_object_is_a_400(client, shop, body):
    refused = client.patch("/api/referrals/settings", headers=auth(), data=body,
                           content_type="application/json")
    assert refused.status_code == 400 and "JSON object of the settings" in refused.get_json()["error"]


def test_settings_are_the_shops_own(client, db, rt, shop):
    install(db, rt, OTHER)
    client.patch("/api/referrals/settings", headers=auth(), json={"hold_days": 3})
    assert client.get("/api/referrals/settings", headers=auth(OTHER)).get_json()["hold_days"] == 14


def test_a_store_without_referral_programs_is_a_404_saying_so(client, db, shop):
    db.execute(delete(Program).where(Program.shop_id == shop.id, Program.kind == "referral_friend"))
    db.commit()
    for answer in (client.get("/api/referrals/settings", headers=auth()),
                   client.patch("/api/referrals/settings", headers=auth(), json={"hold_days": 3})):
        assert answer.status_code == 404
        assert answer.get_json()["error"].startswith("this store has no referral_friend program")


# --- the list --------------------------------------------------------------------------------------


def test_the_list_newest_first_in_pages(client, db, shop):
    made = [a_referral(db, shop, advocate=42 + n % 2).id for n in range(3)]
    first = client.get("/api/referrals?limit=2", headers=auth())
    assert first.status_code == 200
    body = first.get_json()
    assert [r["id"] for r in body["referrals"]] == [made[2], made[1]] and body["next_before"] == made[1]
    rest = client.get(f"/api/referrals?limit=2&before={body['next_before']}", headers=auth()).get_json()
    assert [r["id"] for r in rest["referrals"]] == [made[0]] and rest["next_before"] is None


def test_the_list_filters(client, db, shop):
    held = a_referral(db, shop, advocate=42)
    blocked = a_referral(db, shop, advocate=43, status="blocked", reason="same_email")

    def listed(query: str) -> list[int]:
        answer = client.get(f"/api/referrals?{query}", headers=auth())
        assert answer.status_code == 200, answer.get_json()
        return [r["id"] for r in answer.get_json()["referrals"]]

    assert listed("status=blocked") == [blocked.id]
    assert listed("customer_id=42") == [held.id]
    assert listed("customer_id=gid://shopify/Customer/43") == [blocked.id]
    assert listed(f"link_id={held.link_id}") == [held.id]
    assert listed("status=&customer_id=") == [blocked.id, held.id]  # empty means no filter


def test_bad_list_parameters_are_a_400_naming_each(client, shop):
    refused = client.get("/api/referrals?status=open&link_id=x&limit=500&before=-1&customer_id=%C2%B2",
                         headers=auth())
    assert refused.status_code == 400
    error = refused.get_json()["error"]
    for name in ("status must be one of held, rewarded, voided, blocked, not 'open'", "link_id must be an id",
                 "before must be an id", "limit must be a whole number from 1 to 200, not '500'",
                 "customer_id must be a Shopify customer id"):
        assert name in error


def test_one_referral_and_another_shops_is_a_404_like_a_missing_one(client, db, rt, shop):
    other = install(db, rt, OTHER)
    mine, theirs = a_referral(db, shop), a_referral(db, other, status="blocked", reason="self_referral")
    answer = client.get(f"/api/referrals/{mine.id}", headers=auth())
    assert answer.status_code == 200
    assert answer.get_json()["id"] == mine.id and answer.get_json()["status"] == "held"
    foreign = client.get(f"/api/referrals/{theirs.id}", headers=auth())
    missing = client.get(f"/api/referrals/{theirs.id + 100}", headers=auth())
    assert foreign.status_code == missing.status_code == 404
    assert foreign.get_json()["error"] == f"no referral {theirs.id} for this store"
    assert missing.get_json()["error"] == f"no referral {theirs.id + 100} for this store"
    assert client.get("/api/referrals", headers=auth(OTHER)).get_json()["referrals"][0]["id"] == theirs.id
    assert [r["id"] for r in client.get("/api/referrals", headers=auth()).get_json()["referrals"]] == [mine.id]
