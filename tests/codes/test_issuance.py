"""Reservation, the store's discount input and the bookkeeping around issuance, on the real database."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from app import lifecycle
from app.codes import attachment, issuance
from app.codes.generator import CodeFormat
from app.codes.issuance import discount_input, reference_tag, remember_customer, reserve, terms_of
from app.codes.programs import update_program
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.models import IssuedCode
from tests.conftest import run_worker
from tests.helpers import make_shop_with_programs, post_webhook, program_of


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def customer(db, shop, shopify_id: int = 42):  # type: ignore[no-untyped-def]
    found, _ = remember_customer(db, shop.id, shopify_id)
    return found


def test_a_reservation_is_made_once_per_key(db, shop):
    program = program_of(db, shop)
    first, new = reserve(db, program, customer(db, shop), "welcome:1:42")
    again, new_again = reserve(db, program, customer(db, shop), "welcome:1:42")
    db.commit()
    assert new and not new_again and first.id == again.id and first.code == again.code
    assert first.status == "reserved" and first.create_attempts == 0
    assert first.expires_at - first.issued_at == timedelta(days=30)
    assert first.terms == terms_of(program)


def test_racing_reservations_for_one_key_make_one_row(rt, shop):
    barrier = threading.Barrier(6)
    ids: list[int] = []

    def race() -> None:
        with rt.db.session_scope() as session:
            program = program_of(session, shop)
            barrier.wait()
            row, _ = reserve(session, program, customer(session, shop), "welcome:1:42")
            ids.append(row.id)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 6 and len(set(ids)) == 1


def test_a_code_that_collides_with_an_issued_one_is_drawn_again(db, shop, monkeypatch):
    program = program_of(db, shop)
    taken, _ = reserve(db, program, None, "manual:a")
    draws = iter([taken.code, "WELCOME-FRESHCODE2"])
    monkeypatch.setattr(CodeFormat, "generate", lambda self: next(draws))
    fresh, new = reserve(db, program, None, "manual:b")
    assert new and fresh.code == "WELCOME-FRESHCODE2"


def test_terms_are_frozen_at_reservation(db, shop):
    program = program_of(db, shop)
    row, _ = reserve(db, program, customer(db, shop), "welcome:1:42")
    update_program(db, shop.id, program.id, {"value": 50, "lock_to_customer": False})
    db.commit()
    db.expire_all()
    assert db.get(IssuedCode, row.id).terms["value"] == "10.00"
    assert db.get(IssuedCode, row.id).terms["lock_to_customer"] is True


# --- the store's input -----------------------------------------------------------------------------

def _reserved(db, shop, **changes):  # type: ignore[no-untyped-def]
    program = program_of(db, shop)
    if changes:
        update_program(db, shop.id, program.id, changes)
    row, _ = reserve(db, program, customer(db, shop), f"k:{changes}")
    return row


def test_a_locked_percentage_code_is_one_use_for_its_customer(db, shop):
    row = _reserved(db, shop, value=12.5, minimum_subtotal="30", combines_with_order=True)
    name, variables = discount_input(row, attachment.customer_gid(42))
    body = variables["basicCodeDiscount"]
    assert name == "discountCodeBasicCreate"
    assert body["code"] == row.code and body["usageLimit"] == 1 and body["appliesOncePerCustomer"] is True
    assert body["context"] == {"customers": {"add": ["gid://shopify/Customer/42"]}}
    assert "customerSelection" not in body  # deprecated since 2025-10
    assert body["customerGets"] == {"value": {"percentage": 0.125}, "items": {"all": True}}
    assert body["minimumRequirement"] == {"subtotal": {"greaterThanOrEqualToSubtotal": "30.00"}}
    assert body["combinesWith"] == {"productDiscounts": False, "orderDiscounts": True, "shippingDiscounts": True}
    assert body["tags"] == ["oncecode", reference_tag(row.id)]
    assert body["startsAt"].endswith("Z") and body["endsAt"].endswith("Z")


@pytest.mark.parametrize(("changes", "value"), [
    ({"value": 10}, {"percentage": 0.1}),
    ({"value": 100}, {"percentage": 1.0}),
    ({"value_type": "fixed_amount", "value": "7.50"},
     {"discountAmount": {"amount": "7.50", "appliesOnEachItem": False}}),
])
def test_values_are_what_shopify_expects(db, shop, changes, value):
    row = _reserved(db, shop, **changes)
    assert discount_input(row, None)[1]["basicCodeDiscount"]["customerGets"]["value"] == value


def test_free_shipping_never_combines_with_other_shipping_discounts(db, shop):
    row = _reserved(db, shop, value_type="free_shipping", combines_with_shipping=True)
    name, variables = discount_input(row, attachment.customer_gid(42))
    body = variables["freeShippingCodeDiscount"]
    assert name == "discountCodeFreeShippingCreate"
    assert body["destination"] == {"all": True} and "customerGets" not in body
    assert body["combinesWith"]["shippingDiscounts"] is False


def test_an_unlocked_code_that_never_expires(db, shop):
    row = _reserved(db, shop, lock_to_customer=False, expires_after_days=None)
    body = discount_input(row, attachment.customer_gid(42))[1]["basicCodeDiscount"]
    assert body["context"] == {"all": "ALL"} and "endsAt" not in body


def test_metafields_name_the_code_its_expiry_and_its_link(db, shop):
    inputs = attachment.metafield_inputs("referral_reward", "gid://shopify/Customer/7", "THANKS-ABC",
                                         "2027-01-01T00:00:00Z", "https://demo.myshopify.com/discount/THANKS-ABC")
    assert [(i["key"], i["type"]) for i in inputs] == [
        ("reward_code", "single_line_text_field"), ("reward_code_expires_at", "date_time"), ("reward_code_url", "url")]
    assert {i["namespace"] for i in inputs} == {"$app"} and {i["ownerId"] for i in inputs} == {"gid://shopify/Customer/7"}
    assert len(attachment.metafield_inputs("welcome", "gid://shopify/Customer/7", "W", None, "https://x")) == 2
    assert issuance.BATCH * 3 <= attachment.MAX_METAFIELDS_PER_CALL


# --- revoke, retry, redaction, uninstall ------------------------------------------------------------

def test_revoke_marks_the_code_and_is_idempotent(db, shop):
    row = _reserved(db, shop)
    revoked = issuance.request_revoke(db, shop.id, row.id)
    assert revoked.status == "revoked" and revoked.revoked_at is not None and revoked.deactivated_at is None
    assert issuance.request_revoke(db, shop.id, row.code.lower()).revoked_at == revoked.revoked_at


@pytest.mark.parametrize("status", ["redeemed", "expired"])
def test_a_redeemed_or_expired_code_cannot_be_revoked(db, shop, status):
    row = _reserved(db, shop)
    row.status = status
    db.flush()
    with pytest.raises(Conflict, match=status):
        issuance.request_revoke(db, shop.id, row.id)


def test_retry_puts_a_failed_code_back_where_the_store_left_it(db, shop):
    bare, created = _reserved(db, shop), _reserved(db, shop, value=20)
    for row, gid in ((bare, None), (created, "gid://shopify/DiscountCodeNode/1")):
        row.status, row.discount_gid, row.last_error = "failed", gid, "boom"
    db.flush()
    assert issuance.request_retry(db, shop.id, bare.id).status == "reserved"
    assert issuance.request_retry(db, shop.id, created.id).status == "created"
    assert created.last_error is None
    with pytest.raises(Conflict, match="only failed codes"):
        issuance.request_retry(db, shop.id, created.id)


def test_another_shops_code_is_not_found(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    row = _reserved(db, shop)
    with pytest.raises(NotFound):
        issuance.get_code(db, other.id, row.id)
    with pytest.raises(NotFound):
        issuance.request_revoke(db, other.id, row.code)


def test_redacting_a_customer_removes_their_id_from_idempotency_keys(client, db, rt, redis, shop):
    row, _ = reserve(db, program_of(db, shop), customer(db, shop, 555), "welcome:1:555")
    db.commit()
    post_webhook(client, "customers/redact", shop.domain, {"shop_domain": shop.domain, "customer": {"id": 555},
                                                           "orders_to_redact": []})
    run_worker(redis)
    db.expire_all()
    kept = db.get(IssuedCode, row.id)
    assert kept.customer_id is None and kept.idempotency_key == f"redacted:{row.id}"


def test_uninstall_stops_the_shops_pending_codes_with_a_reason(db, rt, redis, shop):
    pending, done = _reserved(db, shop), _reserved(db, shop, value=20)
    done.status = "attached"
    db.commit()
    lifecycle.uninstall(db, redis, shop.domain, None)
    db.commit()
    db.expire_all()
    assert db.get(IssuedCode, pending.id).status == "failed"
    assert "uninstalled" in db.get(IssuedCode, pending.id).last_error
    assert db.get(IssuedCode, done.id).status == "attached"


def test_stranded_codes_are_found_when_idle_and_unclaimed(db, shop):
    old, _fresh, claimed = _reserved(db, shop), _reserved(db, shop, value=20), _reserved(db, shop, value=30)
    db.commit()
    long_ago = utcnow() - timedelta(minutes=10)
    db.execute(update(IssuedCode).where(IssuedCode.id.in_([old.id, claimed.id])).values(updated_at=long_ago))
    db.execute(update(IssuedCode).where(IssuedCode.id == claimed.id)
               .values(claimed_by="job", claim_expires_at=utcnow() + timedelta(minutes=1), updated_at=long_ago))
    db.commit()
    to_issue, to_revoke = issuance.stranded(db)
    assert to_issue == [(shop.id, old.id)] and to_revoke == []  # not the fresh one, nor the claimed one
    assert db.scalar(select(IssuedCode.terms).where(IssuedCode.id == old.id))["value"] == str(Decimal("10.00"))


def test_racing_claims_take_at_most_their_limit_and_never_the_same_code(rt, db, shop):
    program = program_of(db, shop)
    for n in range(40):
        reserve(db, program, customer(db, shop, shopify_id=1000 + n), f"welcome:1:{1000 + n}")
    db.commit()
    barrier = threading.Barrier(4)
    taken: list[list[int]] = []

    def claim(claimant: str) -> None:
        issuer = issuance.Issuer(rt.db, rt.settings, None, issuance.ShopRef(shop.id, shop.domain), claimant)
        barrier.wait()
        taken.append(issuer.claim(8))

    threads = [threading.Thread(target=claim, args=(f"job-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [code_id for batch in taken for code_id in batch]
    assert all(len(batch) <= 8 for batch in taken) and len(every) == len(set(every)) == 32
