"""Bad input to the JSON API is a 400 naming the parameter, never a 500: ids that fit their columns
(ours PostgreSQL integer, Shopify's int64), whole numbers in ASCII digits, bounded limits, bodies that
are JSON objects (however deeply nested the rest)."""

from __future__ import annotations

import pytest

from app.params import ROW_ID_MAX, SHOPIFY_ID_MAX
from tests.helpers import make_shop_with_programs, program_of, session_token

TOO_BIG = str(ROW_ID_MAX + 1)  # for one of our ids
SHOPIFY_TOO_BIG = str(SHOPIFY_ID_MAX + 1)
NESTED = ("[" * 100_000 + "]" * 100_000).encode()  # deeper than Python's JSON parser can follow


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def auth(shop) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {session_token(shop.domain)}"}


@pytest.mark.parametrize(("query", "message"), [
    ("limit=%C2%B2", "limit must be a whole number from 1 to 200, not '²'"),  # isdigit() but not int()
    ("limit=%D9%A3", "limit must be a whole number from 1 to 200, not '٣'"),  # int() but not ASCII
    ("limit=0", "limit must be a whole number from 1 to 200, not '0'"),
    ("limit=201", "limit must be a whole number from 1 to 200, not '201'"),
    ("limit=-1", "limit must be a whole number"),
    ("limit=+5", "limit must be a whole number"),
    ("limit=%205", "limit must be a whole number"),
    ("limit=1_0", "limit must be a whole number"),
    ("limit=" + "9" * 5000, "limit must be a whole number"),  # more digits than int() reads
    (f"program_id={TOO_BIG}", f"program_id must be an id: a whole number from 1 to {ROW_ID_MAX}, not "),
    (f"program_id={SHOPIFY_TOO_BIG}", "program_id must be an id"),
    ("program_id=0", "program_id must be an id"),
    (f"before={TOO_BIG}", "before must be an id"),
    (f"customer_id={SHOPIFY_TOO_BIG}", f"customer_id must be a Shopify customer id (a number from 1 to "
                                       f"{SHOPIFY_ID_MAX} or gid://shopify/Customer/<id>)"),
    (f"customer_id=gid://shopify/Customer/{SHOPIFY_TOO_BIG}", "customer_id must be a Shopify customer id"),
    ("customer_id=gid://shopify/Customer/%C2%B2", "customer_id must be a Shopify customer id"),
    ("status=%00", "status must be one of"),
])
def test_the_code_list_refuses_bad_parameters(client, shop, query, message):
    answer = client.get(f"/api/codes?{query}", headers=auth(shop))
    assert answer.status_code == 400, answer.data
    assert message in answer.json["error"]
    assert len(answer.json["error"]) < 300  # a refused megabyte is not echoed back


def test_the_largest_ids_are_looked_up_and_not_found(client, shop):
    query = f"program_id={ROW_ID_MAX}&before={ROW_ID_MAX}&customer_id={SHOPIFY_ID_MAX}"
    assert client.get(f"/api/codes?{query}", headers=auth(shop)).json == {"codes": [], "next_before": None}
    assert client.get(f"/api/codes/{ROW_ID_MAX}", headers=auth(shop)).status_code == 404


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/codes/{id}"), ("POST", "/api/codes/{id}/revoke"), ("POST", "/api/codes/{id}/retry"),
    ("GET", "/api/programs/{id}"), ("PATCH", "/api/programs/{id}"), ("GET", "/api/data-requests/{id}"),
])
@pytest.mark.parametrize(("value", "status"), [
    (TOO_BIG, 400), (SHOPIFY_TOO_BIG, 400), ("9" * 5000, 400), ("0" * 30 + "7", 404), ("%C2%B2", 404), ("-1", 404),
])
def test_ids_in_paths_fit_a_bigint(client, shop, method, path, value, status):
    answer = client.open(path.format(id=value), method=method, headers=auth(shop), json={"active": True})
    assert answer.status_code == status, answer.data
    if status == 400:
        assert f"an id in the path must be a whole number from 1 to {ROW_ID_MAX}" in answer.json["error"]


@pytest.mark.parametrize(("body", "message"), [
    ({"program_id": ROW_ID_MAX + 1, "customer_id": 42}, "program_id must be the id of one of this store's programs"),
    ({"program_id": SHOPIFY_ID_MAX + 1, "customer_id": 42}, "program_id must be the id"),
    ({"program_id": 1.0, "customer_id": 42}, "program_id must be the id"),
    ({"program_id": "1", "customer_id": 42}, "program_id must be the id"),
    ({"program_id": "PROGRAM", "customer_id": SHOPIFY_ID_MAX + 1}, "customer_id must be a Shopify customer id"),
    ({"program_id": "PROGRAM", "customer_id": f"gid://shopify/Customer/{SHOPIFY_TOO_BIG}"}, "customer_id must be"),
    ({"program_id": "PROGRAM", "customer_id": "\u00b2"}, "customer_id must be"),
    ({"program_id": "PROGRAM", "customer_id": -3}, "customer_id must be"),
    ({"program_id": "PROGRAM", "customer_id": True}, "customer_id must be"),
])
def test_issuing_refuses_ids_that_cannot_be(client, db, shop, body, message):
    program = program_of(db, shop).id
    body = {key: program if value == "PROGRAM" else value for key, value in body.items()}
    answer = client.post("/api/codes", json=body, headers=auth(shop))
    assert answer.status_code == 400 and message in answer.json["error"]


BODY_ROUTES = [("POST", "/api/codes"), ("PATCH", "/api/programs/{program}"), ("PATCH", "/api/reconcile")]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize(("body", "message"), [
    (NESTED, "the request body is nested too deeply to read"),
    (b'{"a": ' + NESTED + b"}", "the request body is nested too deeply to read"),
    (b"[]", "the body must be a JSON object"),
    (b"null", "the body must be a JSON object"),
    (b"{", "the body must be a JSON object"),
    (b"\xff\xfe\x00", "the body must be a JSON object"),
    (b'{"a": ' + b"9" * 5000 + b"}", "the body must be a JSON object"),  # more digits than int() reads
])
def test_bodies_must_be_json_objects(client, db, shop, method, path, body, message):
    url = path.format(program=program_of(db, shop).id)
    answer = client.open(url, method=method, data=body, headers=auth(shop), content_type="application/json")
    assert answer.status_code == 400 and message in answer.json["error"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PATCH", "/api/programs/{program}", {"name": "Welcome\x00"}),  # found by tests/test_fuzz.py
    ("PATCH", "/api/programs/{program}", {"name": "\ud800"}),
    ("PATCH", "/api/programs/{program}", {"name": "ok", "\x00": 1}),
    ("POST", "/api/codes", {"program_id": "{program}", "customer_id": 42, "idempotency_key": "key\x00"}),
    ("POST", "/api/codes", {"program_id": "{program}", "customer_id": 42, "idempotency_key": "\udfff"}),
])
def test_text_postgresql_cannot_store_is_refused(client, db, shop, method, path, body):
    program = program_of(db, shop).id
    body = {key: program if value == "{program}" else value for key, value in body.items()}
    answer = client.open(path.format(program=program), method=method, json=body, headers=auth(shop))
    assert answer.status_code == 400
    assert "must not contain NUL characters or unpaired surrogates" in answer.json["error"]


def test_a_body_in_utf16_is_read(client, db, shop):
    body = '{"interval_minutes": 30}'.encode("utf-16")
    answer = client.patch("/api/reconcile", data=body, headers=auth(shop), content_type="application/json")
    assert answer.status_code == 200 and answer.json["interval_minutes"] == 30


@pytest.mark.parametrize("minutes", [ROW_ID_MAX + 1, SHOPIFY_ID_MAX + 1, 10**30, -1, 1.5, "30"])
def test_the_catch_up_interval_is_bounded(client, shop, minutes):
    answer = client.patch("/api/reconcile", json={"interval_minutes": minutes}, headers=auth(shop))
    assert answer.status_code == 400 and "whole number of minutes from 1 to 1440" in answer.json["error"]
