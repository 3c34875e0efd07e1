"""The programs JSON API: session-token auth, shop scoping, and PATCH with the domain's rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from app import lifecycle
from app.models import Program, Shop
from tests.helpers import make_shop, session_token

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"
FORGED_SECRET = "not-the-app-secret-but-32-bytes-long"


def auth(domain: str = SHOP, **kwargs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {session_token(domain, **kwargs)}"}


def install(db, rt, domain: str, installed: bool = True) -> Shop:  # type: ignore[no-untyped-def]
    shop = make_shop(db, rt.cipher, domain=domain, installed=installed)
    lifecycle.create_default_programs(db, shop.id)
    db.commit()
    return shop


def welcome(db, shop: Shop) -> Program:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalars(select(Program).where(Program.shop_id == shop.id, Program.kind == "welcome")).one()


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return install(db, rt, SHOP)


@pytest.fixture
def other(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return install(db, rt, OTHER)


ENDPOINTS = [("GET", "/api/programs"), ("GET", "/api/programs/{id}"), ("PATCH", "/api/programs/{id}")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("token", [None, "not-a-jwt", "forged", "expired", "no-exp", "no-nbf"])
def test_every_endpoint_needs_a_valid_session_token(client, db, shop, method, path, token):
    program = welcome(db, shop)
    headers = ({} if token is None else
               auth(secret=FORGED_SECRET) if token == "forged" else
               auth(exp=1, nbf=0, iat=0) if token == "expired" else
               auth(exp=None) if token == "no-exp" else  # null is missing to PyJWT
               auth(nbf=None) if token == "no-nbf" else
               {"Authorization": f"Bearer {token}"})
    response = client.open(path.format(id=program.id), method=method, headers=headers, json={"active": True})
    assert response.status_code == 401
    assert "session token" in response.json["error"]
    assert welcome(db, shop).active is False


def test_list_shows_the_token_shops_programs_only(client, db, shop, other):
    listed = client.get("/api/programs", headers=auth())
    assert listed.status_code == 200
    programs = listed.json["programs"]
    assert [p["kind"] for p in programs] == ["welcome", "referral_friend", "referral_reward"]
    ours = {p.id for p in db.scalars(select(Program).where(Program.shop_id == shop.id))}
    assert {p["id"] for p in programs} == ours
    assert all(p["active"] is False for p in programs)  # programs start switched off
    assert programs[0]["value"] == "10.00" and programs[0]["code_format"]["example"].startswith("WELCOME-")


def test_get_one_program(client, db, shop):
    program = welcome(db, shop)
    got = client.get(f"/api/programs/{program.id}", headers=auth())
    assert got.status_code == 200
    assert got.json["id"] == program.id and got.json["name"] == "Welcome code"
    assert got.json["combines_with"] == {"product_discounts": False, "order_discounts": False,
                                         "shipping_discounts": True}


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_another_shops_program_is_not_found(client, db, shop, other, method):
    theirs = welcome(db, other)
    response = client.open(f"/api/programs/{theirs.id}", method=method, headers=auth(), json={"active": True})
    assert response.status_code == 404
    assert response.json == {"error": f"no program {theirs.id} for this store"}
    assert welcome(db, other).active is False


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_a_program_that_does_not_exist_is_not_found(client, shop, method):
    response = client.open("/api/programs/999999", method=method, headers=auth(), json={"active": True})
    assert response.status_code == 404


def test_an_uninstalled_shop_gets_nothing(client, db, rt):
    install(db, rt, SHOP, installed=False)
    assert client.get("/api/programs", headers=auth()).status_code == 404


def test_patch_changes_the_program_and_answers_it(client, db, shop):
    program = welcome(db, shop)
    changes = {"value": "15", "active": True, "lock_to_customer": False, "code_prefix": "hello-",
               "expires_after_days": None, "minimum_subtotal": 40, "combines_with_order": True}
    response = client.patch(f"/api/programs/{program.id}", headers=auth(), json=changes)

    assert response.status_code == 200
    body = response.json
    assert (body["value"], body["active"], body["lock_to_customer"], body["expires_after_days"],
            body["minimum_subtotal"]) == ("15.00", True, False, None, "40.00")
    assert body["combines_with"]["order_discounts"] is True
    assert body["code_format"]["prefix"] == "HELLO-" and body["code_format"]["example"].startswith("HELLO-")

    stored = welcome(db, shop)  # committed, not just answered
    assert (stored.value, stored.active, stored.code_prefix, stored.minimum_subtotal) == (
        Decimal("15.00"), True, "HELLO-", Decimal("40.00"))
    again = client.get(f"/api/programs/{program.id}", headers=auth()).json
    assert {k: v for k, v in again.items() if k != "code_format"} == {
        k: v for k, v in body.items() if k != "code_format"}


def test_patch_to_free_shipping_sets_the_value_to_zero(client, db, shop):
    program = welcome(db, shop)
    response = client.patch(f"/api/programs/{program.id}", headers=auth(), json={"value_type": "free_shipping"})
    assert response.status_code == 200 and response.json["value"] == "0.00"


@pytest.mark.parametrize(("changes", "message"), [
    ({"value": 0}, "value must be more than 0 and at most 100 for a percentage, not 0"),
    ({"value": "12.345"}, "value may have at most 2 decimal places, not 12.345"),
    ({"active": "yes"}, "active must be true or false, not 'yes'"),
    ({"expires_after_days": 5000}, "expires_after_days must be none (codes never expire) or 1 to 3650 days"),
    ({"code_length": 8}, "code_length: codes would be guessable"),
    ({"code_prefix": "no spaces"}, "code_prefix: the prefix may hold up to 16 characters"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"kind": "manual"}, "kind cannot be changed"),
    ({"active": True, "value_type": "bogo"}, "value_type must be one of percentage, fixed_amount, free_shipping"),
])
def test_patch_refuses_invalid_fields_and_changes_nothing(client, db, shop, changes, message):
    program = welcome(db, shop)
    response = client.patch(f"/api/programs/{program.id}", headers=auth(), json=changes)
    assert response.status_code == 400
    assert message in response.json["error"]
    after = welcome(db, shop)
    assert (after.active, after.value, after.value_type, after.code_length) == (False, Decimal("10.00"),
                                                                                "percentage", 10)


@pytest.mark.parametrize("body", [b"[]", b'["active"]', b'"active"', b"null", b"1", b"true", b"not json", b"",
                                  b'{"active": tru'])
def test_patch_body_must_be_a_json_object(client, db, shop, body):
    program = welcome(db, shop)
    response = client.patch(f"/api/programs/{program.id}", headers={**auth(), "Content-Type": "application/json"},
                            data=body)
    assert response.status_code == 400
    assert response.json == {"error": 'the body must be a JSON object of the fields to change, e.g. {"active": true}'}


def test_patch_reads_json_sent_without_a_content_type(client, db, shop):
    program = welcome(db, shop)
    response = client.patch(f"/api/programs/{program.id}", headers=auth(), data=b'{"active": true}')
    assert response.status_code == 200 and response.json["active"] is True
