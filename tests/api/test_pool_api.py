"""The friend code pool in the JSON API: status, settings with the domain's rules, a top-up on demand."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import Program
from app.queues import job_status, pool_top_up_job_id
from tests.api.test_programs_api import OTHER, SHOP, auth, install
from tests.codes.test_pool_take import a_pool


@pytest.fixture
def friend(db, rt) -> Program:  # type: ignore[no-untyped-def]
    shop = install(db, rt, SHOP)
    program = db.scalars(select(Program).where(Program.shop_id == shop.id, Program.kind == "referral_friend")).one()
    program.active = True
    db.commit()
    return program


def test_status_is_the_shops_own(client, db, rt, friend):
    a_pool(db, friend, 4)
    other = install(db, rt, OTHER)
    theirs = db.scalars(select(Program).where(Program.shop_id == other.id, Program.kind == "referral_friend")).one()
    a_pool(db, theirs, 9)
    answer = client.get("/api/referrals/pool", headers=auth())
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["available"], body["program_id"], len(body["pools"])) == (4, friend.id, 1)
    assert body["settings"] == {"low_water": 200, "size": 1000, "window_days": 7}
    assert client.get("/api/referrals/pool", headers=auth(OTHER)).get_json()["available"] == 9


def test_settings_change_and_bad_input_is_a_400_that_changes_nothing(client, db, friend):
    ok = client.patch("/api/referrals/pool", json={"size": 3000, "low_water": 500}, headers=auth())
    assert ok.status_code == 200 and ok.get_json()["settings"]["size"] == 3000
    bad = client.patch("/api/referrals/pool", json={"size": 0, "window_days": "soon"}, headers=auth())
    assert bad.status_code == 400
    assert "window_days must be a whole number, not 'soon'" in bad.get_json()["error"]
    assert client.patch("/api/referrals/pool", data="[1]", headers=auth()).status_code == 400
    db.expire_all()
    assert db.get(Program, friend.id).pool_size == 3000


def test_top_up_on_demand(client, rt, db, friend):
    first = client.post("/api/referrals/pool/top-up", headers=auth())
    assert first.status_code == 202 and first.get_json() == {"queued": True}
    assert job_status(rt.redis, pool_top_up_job_id(friend.shop_id, friend.id)).value == "queued"
    again = client.post("/api/referrals/pool/top-up", headers=auth())
    assert again.status_code == 200 and again.get_json() == {"queued": False}
    friend.active = False
    db.commit()
    off = client.post("/api/referrals/pool/top-up", headers=auth())
    assert off.status_code == 409 and "switch it on first" in off.get_json()["error"]


def test_a_session_token_is_required(client, friend):
    assert client.get("/api/referrals/pool").status_code == 401


def test_landing_caps_and_their_blocks_are_the_shops_own(client, db, rt, friend):
    from app.codes import referrals
    from app.db import utcnow
    from app.models import ReferralBlock

    link, _ = referrals.create_link(db, friend.shop_id, 42)
    other = install(db, rt, OTHER)
    db.add_all([ReferralBlock(shop_id=friend.shop_id, link_id=link.id, reason="link_daily_cap", at=utcnow()),
                ReferralBlock(shop_id=other.id, reason="address_hourly_cap", at=utcnow())])
    db.commit()
    answer = client.get("/api/referrals/caps", headers=auth())
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["caps"] == {"per_link_per_day": 20, "per_address_per_hour": 5}
    assert [(b["link_id"], b["reason"]) for b in body["blocks"]] == [(link.id, "link_daily_cap")]
    assert client.get(f"/api/referrals/caps?link_id={link.id + 1000}", headers=auth()).get_json()["blocks"] == []
    assert client.get("/api/referrals/caps?link_id=x", headers=auth()).status_code == 400


def test_landing_caps_change_and_bad_input_is_a_400_that_changes_nothing(client, db, friend):
    ok = client.patch("/api/referrals/caps", json={"per_link_per_day": 50, "per_address_per_hour": 0},
                      headers=auth())
    assert ok.status_code == 200 and ok.get_json()["caps"] == {"per_link_per_day": 50, "per_address_per_hour": 0}
    bad = client.patch("/api/referrals/caps", json={"per_link_per_day": 1, "per_address_per_hour": -1},
                       headers=auth())
    assert bad.status_code == 400 and "per_address_per_hour must be a whole number from 0" in bad.get_json()["error"]
    db.expire_all()
    assert db.get(Program, friend.id).friend_codes_per_link_per_day == 50
    assert client.get("/api/referrals/caps").status_code == 401
