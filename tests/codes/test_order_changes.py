"""Reading cancellations and refunds from Shopify's bodies, and recording them once (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.codes import order_changes, reconciliation
from app.codes.order_changes import OrderChanges, RefundFacts
from app.models import OrderRefund, PaidOrder
from tests.helpers import make_shop, order_payload


def transaction(amount: str, kind: str = "refund", status: str = "success", **extra: object) -> dict:
    return {"kind": kind, "status": status, "amount": amount, "currency": "EUR", **extra}


def refund_body(refund_id: int = 7, order_id: int = 99, transactions: list[dict] | None = None) -> dict:
    return {"id": refund_id, "order_id": order_id, "created_at": "2026-12-01T10:00:00+01:00",
            "processed_at": "2026-12-01T10:00:05+01:00",
            "transactions": transactions if transactions is not None else [transaction("12.50")]}


def test_a_refund_is_what_its_successful_refund_transactions_paid_back():
    refund = RefundFacts.from_webhook(refund_body(transactions=[
        transaction("12.50"), transaction("3.00", status="failure"), transaction("4.00", status="pending"),
        transaction("9.99", kind="sale"), transaction("1.25")]))
    assert (refund.refund_id, refund.order_id, refund.amount, refund.currency) == (7, 99, Decimal("13.75"), "EUR")
    assert refund.refunded_at == datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)


def test_a_refund_counts_the_shops_money_when_shopify_gives_it():
    refund = RefundFacts.from_webhook(refund_body(transactions=[transaction(
        "20.00", currency="USD", amount_set={"shop_money": {"amount": "18.40", "currency_code": "EUR"},
                                           "presentment_money": {"amount": "20.00", "currency_code": "USD"}})]))
    assert (refund.amount, refund.currency) == (Decimal("18.40"), "EUR")


def test_a_refund_without_money_is_zero():
    refund = RefundFacts.from_webhook(refund_body(transactions=[]))
    assert (refund.amount, refund.currency) == (Decimal("0.00"), None)


@pytest.mark.parametrize(("body", "words"), [
    ({**refund_body(), "processed_at": "yesterday", "created_at": None}, "processed_at is not a time"),
    (refund_body(transactions=[transaction("lots")]), "transactions[].amount is not an amount"),
])
def test_a_malformed_refund_is_refused_naming_the_field(body: dict, words: str):
    with pytest.raises(reconciliation.InvalidOrder, match=words.replace("[", r"\[").replace("]", r"\]")):
        RefundFacts.from_webhook(body)


def test_an_order_body_gives_its_cancellation_and_its_refunds():
    changes = OrderChanges.from_webhook({"id": 99, "cancelled_at": "2026-12-02T08:00:00Z", "cancel_reason": "FRAUD",
                                         "refunds": [refund_body(1), {**refund_body(2), "order_id": None}]})
    assert (changes.order_id, changes.cancel_reason) == (99, "fraud")
    assert changes.cancelled_at == datetime(2026, 12, 2, 8, tzinfo=UTC)
    assert [(r.refund_id, r.order_id) for r in changes.refunds] == [(1, 99), (2, 99)]
    assert OrderChanges.from_webhook({"id": 5, "cancelled_at": None}).cancelled_at is None


def test_refunds_count_once_and_the_paid_order_gets_them_whenever_it_comes(db, rt):
    shop = make_shop(db, rt.cipher)
    first = order_changes.record_refund(db, shop.id, RefundFacts.from_webhook(refund_body(1, 99)))
    again = order_changes.record_refund(db, shop.id, RefundFacts.from_webhook(refund_body(1, 99)))
    assert (first.refunds, first.order_known, again.refunds, again.seen_refunds) == (1, False, 0, 1)
    assert "kept until the order's orders/paid" in first.summary()

    order = reconciliation.PaidOrderFacts.from_webhook(order_payload(99, total="100.00"))
    reconciliation.reconcile(db, shop.id, order, "webhook")
    row = db.scalars(select(PaidOrder).where(PaidOrder.shop_id == shop.id)).one()
    assert row.refunded_amount == Decimal("12.50")

    cancelled = order_changes.record_changes(db, shop.id, OrderChanges.from_webhook(
        {"id": 99, "cancelled_at": "2026-12-02T08:00:00Z", "cancel_reason": "customer",
         "refunds": [refund_body(1, 99), refund_body(2, 99, [transaction("87.50")])]}))
    assert (cancelled.cancelled, cancelled.refunds, cancelled.seen_refunds, cancelled.order_known) == (True, 1, 1, True)
    db.refresh(row)
    assert (row.refunded_amount, row.cancel_reason) == (Decimal("100.00"), "customer")
    assert db.scalars(select(OrderRefund.refund_id).order_by(OrderRefund.refund_id)).all() == [1, 2]
    # Another shop's order with the same id is another order.
    other = make_shop(db, rt.cipher, domain="other.myshopify.com")
    assert order_changes.record_refund(db, other.id, RefundFacts.from_webhook(refund_body(1, 99))).refunds == 1
