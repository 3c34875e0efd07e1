"""The expiry sweep: codes past their end stop being open; nothing else moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.codes import expiry, issuance
from app.codes.reconciliation import PaidOrderFacts, reconcile
from app.db import utcnow
from app.models import IssuedCode
from tests.helpers import issued_code, make_shop_with_programs, order_payload, session_token
from workers.reconcile import expire_codes


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def statuses(db) -> dict[str, str]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return {row.code: row.status for row in db.scalars(select(IssuedCode))}


@pytest.mark.parametrize(("status", "after"), [
    ("attached", "expired"), ("created", "expired"), ("reserved", "reserved"), ("redeemed", "redeemed"),
    ("revoked", "revoked"), ("failed", "failed"),
])
def test_only_open_codes_past_their_end_expire(db, shop, status, after):
    issued_code(db, shop, "PAST", status=status, expires_at=utcnow() - timedelta(minutes=1))
    issued_code(db, shop, "FUTURE", status=status, expires_at=utcnow() + timedelta(days=1))
    issued_code(db, shop, "FOREVER", status=status, expires_at=None)
    assert expire_codes()["expired"] == (1 if after == "expired" else 0)
    assert statuses(db) == {"PAST": after, "FUTURE": status, "FOREVER": status}
    assert expire_codes()["expired"] == 0  # a second run finds nothing


def test_the_sweep_works_in_batches_and_per_shop(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    for n in range(5):
        issued_code(db, shop, f"OLD{n}", expires_at=utcnow() - timedelta(hours=1))
    issued_code(db, other, "THEIRS", expires_at=utcnow() + timedelta(hours=1))
    assert expiry.expire_due(db, shop.id, utcnow(), limit=2) == 2
    db.commit()
    assert expiry.expire_due(db, other.id, utcnow()) == 0
    assert expire_codes()["expired"] == 3
    assert sorted(statuses(db).values()) == ["attached"] + ["expired"] * 5


def test_a_late_redemption_wins_over_expiry(db, shop):
    code = issued_code(db, shop, "LATE01", expires_at=utcnow() - timedelta(hours=1))
    expire_codes()
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(order_payload(501, [("LATE01", "2.00")])), "webhook")
    db.commit()
    db.expire_all()
    assert db.get(IssuedCode, code.id).status == "redeemed"


def test_expired_codes_are_not_open_even_before_the_sweep(db, shop, client):
    issued_code(db, shop, "STALE1", expires_at=utcnow() - timedelta(minutes=1))
    issued_code(db, shop, "FRESH1", expires_at=utcnow() + timedelta(days=3))
    issued_code(db, shop, "USED01", status="redeemed")
    shown = [row.code for row, _, _ in issuance.list_codes(db, shop.id, status="open")]
    assert shown == ["FRESH1"]
    headers = {"Authorization": f"Bearer {session_token(shop.domain)}"}
    body = client.get("/api/codes?status=open", headers=headers).get_json()
    assert [c["code"] for c in body["codes"]] == ["FRESH1"] and body["codes"][0]["open"] is True
    everything = {c["code"]: c["open"] for c in client.get("/api/codes", headers=headers).get_json()["codes"]}
    assert everything == {"STALE1": False, "FRESH1": True, "USED01": False}
