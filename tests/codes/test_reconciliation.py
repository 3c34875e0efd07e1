"""Redemption reconciliation on the real database: matching, exactly once, anomalies, odd orders."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.codes import reconciliation
from app.codes.reconciliation import InvalidOrder, PaidOrderFacts, reconcile
from app.models import IssuedCode, PaidOrder, RedemptionAnomaly, WebhookEvent
from tests.conftest import run_worker
from tests.helpers import issued_code, make_shop, make_shop_with_programs, order_payload, post_webhook


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def facts(order_id: int, codes: list[tuple[str, str]] = (), **kwargs) -> PaidOrderFacts:  # type: ignore[assignment]
    return PaidOrderFacts.from_webhook(order_payload(order_id, list(codes), **kwargs))


def code_row(db, code_id: int) -> IssuedCode:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.get(IssuedCode, code_id)


def test_a_paid_order_redeems_our_code_matched_in_any_case(db, shop):
    code = issued_code(db, shop, "WELCOME-ABC123")
    result = reconcile(db, shop.id, facts(1001, [("welcome-abc123", "9.50")], total="90.50", subtotal="85.50"),
                       "webhook")
    db.commit()
    row = code_row(db, code.id)
    assert result.new_order and result.redeemed == [code.id] and result.other_codes == 0
    assert (row.status, row.order_id, row.order_name) == ("redeemed", 1001, "#1001")
    assert (row.order_total, row.order_subtotal, row.discount_amount, row.currency) == (
        Decimal("90.50"), Decimal("85.50"), Decimal("9.50"), "USD")
    assert row.redeemed_at == datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # processed_at, in UTC
    order = db.scalars(select(PaidOrder)).one()
    assert (order.our_codes, order.other_codes, order.total_price, order.source) == (1, 0, Decimal("90.50"), "webhook")


def test_codes_we_did_not_issue_are_counted_as_other_codes(db, shop):
    ours = issued_code(db, shop, "WELCOME-OURS01")
    result = reconcile(db, shop.id, facts(1002, [("SUMMER10", "5.00"), ("welcome-ours01", "3.00")]), "webhook")
    db.commit()
    assert result.redeemed == [ours.id] and result.other_codes == 1
    assert db.scalars(select(PaidOrder)).one().other_codes == 1
    assert "1 other code" in result.summary()


def test_an_order_with_several_of_our_codes_redeems_each_with_its_own_amount(db, shop):
    first = issued_code(db, shop, "WELCOME-AAAA11")
    second = issued_code(db, shop, "FRIEND-BBBB22", kind="referral_friend")
    result = reconcile(db, shop.id, facts(1003, [("WELCOME-AAAA11", "4.00"), ("FRIEND-BBBB22", "6.00")]), "webhook")
    db.commit()
    assert sorted(result.redeemed) == sorted([first.id, second.id])
    assert code_row(db, first.id).discount_amount == Decimal("4.00")
    assert code_row(db, second.id).discount_amount == Decimal("6.00")
    assert db.scalars(select(PaidOrder)).one().our_codes == 2


def test_replaying_the_same_order_changes_nothing(db, shop):
    code = issued_code(db, shop, "WELCOME-REPLAY")
    reconcile(db, shop.id, facts(1004, [("WELCOME-REPLAY", "5.00")]), "webhook")
    db.commit()
    before = code_row(db, code.id).updated_at
    again = reconcile(db, shop.id, facts(1004, [("WELCOME-REPLAY", "5.00")], total="999.00"), "catch_up")
    db.commit()
    assert not again.new_order and again.redeemed == [] and again.already == 1 and again.anomalies == 0
    assert code_row(db, code.id).updated_at == before and code_row(db, code.id).order_total == Decimal("100.00")
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 1
    assert db.scalars(select(PaidOrder)).one().source == "webhook"


def test_a_code_on_a_second_order_is_an_anomaly_and_the_first_redemption_stands(db, shop):
    code = issued_code(db, shop, "WELCOME-TWICE1")
    reconcile(db, shop.id, facts(2001, [("WELCOME-TWICE1", "5.00")]), "webhook")
    second = reconcile(db, shop.id, facts(2002, [("WELCOME-TWICE1", "7.00")]), "webhook")
    third = reconcile(db, shop.id, facts(2002, [("WELCOME-TWICE1", "7.00")]), "webhook")  # replayed
    db.commit()
    row = code_row(db, code.id)
    assert second.anomalies == 1 and third.anomalies == 0 and not third.new_order
    assert (row.order_id, row.discount_amount) == (2001, Decimal("5.00"))
    [anomaly] = db.scalars(select(RedemptionAnomaly)).all()
    assert (anomaly.code_id, anomaly.shopify_order_id, anomaly.order_name) == (code.id, 2002, "#2002")
    assert reconciliation.anomalies_of(db, shop.id, code.id)[0]["order_id"] == 2002


@pytest.mark.parametrize("status", ["created", "attached", "expired", "revoked", "reserved"])
def test_a_redemption_is_recorded_whatever_the_code_status(db, shop, status):
    # An order paid just before the expiry sweep, or racing a revoke, still used the code.
    code = issued_code(db, shop, f"WELCOME-{status.upper()}", status=status)
    reconcile(db, shop.id, facts(3000 + len(status), [(code.code, "1.00")]), "webhook")
    db.commit()
    assert code_row(db, code.id).status == "redeemed"


def test_codes_are_matched_within_the_shop_only(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    theirs = issued_code(db, other, "WELCOME-SHARED")
    result = reconcile(db, shop.id, facts(4001, [("WELCOME-SHARED", "5.00")]), "webhook")
    db.commit()
    assert result.redeemed == [] and result.other_codes == 1
    assert code_row(db, theirs.id).status == "attached"


def test_an_order_without_a_customer_or_codes_is_recorded_for_the_averages(db, shop):
    result = reconcile(db, shop.id, facts(5001, [], customer_id=None, total="42.00"), "webhook")
    db.commit()
    assert result.new_order and result.redeemed == []
    assert db.scalars(select(PaidOrder)).one().our_codes == 0


def test_an_order_paid_in_another_currency_counts_in_the_shop_currency(db, shop):
    code = issued_code(db, shop, "WELCOME-EUROS1")
    # The buyer paid in EUR at 0.9 per USD; the shop's books are in USD.
    reconcile(db, shop.id, facts(6001, [("WELCOME-EUROS1", "10.00")], total="90.00", presentment="EUR",
                                 rate="0.9"), "webhook")
    db.commit()
    row = code_row(db, code.id)
    assert (row.order_total, row.discount_amount, row.currency) == (Decimal("90.00"), Decimal("10.00"), "USD")


def test_a_shop_that_changed_its_currency_keeps_each_orders_own(db, shop):
    reconcile(db, shop.id, facts(6101, [], currency="CAD", total="50.00"), "webhook")
    db.commit()
    assert db.scalars(select(PaidOrder)).one().currency == "CAD"


def test_without_applications_the_discount_codes_amount_is_used(db, shop):
    code = issued_code(db, shop, "WELCOME-PLAIN1")
    payload = order_payload(7001, [("WELCOME-PLAIN1", "3.30")])
    payload.pop("discount_applications")
    payload["line_items"][0]["discount_allocations"] = []
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(payload), "webhook")
    db.commit()
    assert code_row(db, code.id).discount_amount == Decimal("3.30")


@pytest.mark.parametrize(("change", "message"), [
    ({"id": None}, "numeric id"),
    ({"id": "abc"}, "numeric id"),
    ({"total_price_set": None, "total_price": None}, "total_price"),
    ({"total_price_set": {"shop_money": {"amount": "ten", "currency_code": "USD"}}}, "not an amount"),
    ({"processed_at": "yesterday", "created_at": None}, "processed_at"),
    ({"total_price_set": {"shop_money": {"amount": "1.00", "currency_code": "dollars"}}}, "currency"),
])
def test_an_order_missing_what_we_need_is_refused_with_the_reason(change, message):
    payload = order_payload(8001, [])
    payload.update(change)
    with pytest.raises(InvalidOrder, match=message):
        PaidOrderFacts.from_webhook(payload)


def test_graphql_orders_become_the_same_facts():
    node = {"id": "gid://shopify/Order/9001", "legacyResourceId": "9001", "name": "#9001",
            "processedAt": "2026-11-20T15:00:00Z", "updatedAt": "2026-11-20T15:00:01Z",
            "displayFinancialStatus": "PARTIALLY_REFUNDED", "discountCodes": ["welcome-x", "WELCOME-X"],
            "totalPriceSet": {"shopMoney": {"amount": "90.5", "currencyCode": "USD"}},
            "subtotalPriceSet": {"shopMoney": {"amount": "85.5", "currencyCode": "USD"}},
            "totalDiscountsSet": {"shopMoney": {"amount": "9.5", "currencyCode": "USD"}}}
    order = PaidOrderFacts.from_graphql(node)
    assert order.paid and order.order_id == 9001 and order.total_price == Decimal("90.50")
    assert order.codes == (reconciliation.UsedCode("WELCOME-X", Decimal("9.50")),)
    two = PaidOrderFacts.from_graphql({**node, "discountCodes": ["A1", "B2"]})
    assert [c.amount for c in two.codes] == [None, None]  # the query does not split the discount
    assert not PaidOrderFacts.from_graphql({**node, "displayFinancialStatus": "PENDING"}).paid


def test_concurrent_deliveries_of_one_order_redeem_once(rt, shop):
    with rt.db.session_scope() as session:
        code_id = issued_code(session, shop, "WELCOME-RACE01").id
    barrier = threading.Barrier(8)
    results: list[reconciliation.Reconciled] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            with rt.db.session_scope() as session:
                barrier.wait()
                results.append(reconcile(session, shop.id, facts(9101, [("WELCOME-RACE01", "5.00")]), "webhook"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(len(r.redeemed) for r in results) == 1 and sum(r.already for r in results) == 7
    assert sum(r.new_order for r in results) == 1 and sum(r.anomalies for r in results) == 0
    with rt.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(PaidOrder)) == 1
        assert session.get(IssuedCode, code_id).order_id == 9101


def test_two_orders_racing_for_one_code_give_one_redemption_and_one_anomaly(rt, shop):
    with rt.db.session_scope() as session:
        code_id = issued_code(session, shop, "WELCOME-RACE02").id
    barrier = threading.Barrier(2)
    results: list[reconciliation.Reconciled] = []

    def deliver(order_id: int) -> None:
        with rt.db.session_scope() as session:
            barrier.wait()
            results.append(reconcile(session, shop.id, facts(order_id, [("WELCOME-RACE02", "5.00")]), "webhook"))

    threads = [threading.Thread(target=deliver, args=(order_id,)) for order_id in (9201, 9202)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted((len(r.redeemed), r.anomalies) for r in results) == [(0, 1), (1, 0)]
    with rt.db.session_scope() as session:
        winner = session.get(IssuedCode, code_id).order_id
        [anomaly] = session.scalars(select(RedemptionAnomaly)).all()
        assert {winner, anomaly.shopify_order_id} == {9201, 9202}


# --- through the webhook --------------------------------------------------------------------------

def test_duplicate_orders_paid_webhooks_redeem_once(client, db, redis, shop):
    code = issued_code(db, shop, "WELCOME-HOOK01")
    payload = order_payload(9301, [("welcome-hook01", "5.00")])
    event = "8d7c2f7e-0000-4000-8000-000000009301"
    assert post_webhook(client, "orders/paid", shop.domain, payload, event_id=event).status_code == 200
    assert post_webhook(client, "orders/paid", shop.domain, payload, event_id=event).status_code == 200
    # Shopify sends the same order again under another event id (a second subscription, say).
    assert post_webhook(client, "orders/paid", shop.domain, payload).status_code == 200
    run_worker(redis)
    assert code_row(db, code.id).order_id == 9301
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 1
    events = db.scalars(select(WebhookEvent).where(WebhookEvent.topic == "orders/paid")).all()
    assert sorted(e.status for e in events) == ["processed", "processed"]


@pytest.mark.parametrize("installed", [False, None])
def test_orders_of_uninstalled_or_unknown_shops_are_ignored(client, db, redis, rt, installed):
    domain = "gone.myshopify.com"
    if installed is False:
        make_shop(db, rt.cipher, domain=domain, installed=False)
    assert post_webhook(client, "orders/paid", domain, order_payload(9401, [("X", "1.00")])).status_code == 200
    run_worker(redis)
    db.expire_all()
    statuses = db.scalars(select(WebhookEvent.status).where(WebhookEvent.topic == "orders/paid")).all()
    # An uninstalled shop's order is recorded and then ignored by its job; an unknown shop's is not recorded.
    assert statuses == (["ignored"] if installed is False else [])
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 0


def test_a_malformed_order_fails_its_event_with_the_reason(client, db, redis, shop):
    # Intake refuses an order without a numeric id (400); one without readable totals reaches the job.
    assert post_webhook(client, "orders/paid", shop.domain, {"id": "not-a-number"}).status_code == 400
    payload = {"id": 9501, "total_price": "lots", "currency": "USD", "processed_at": "2026-11-20T10:00:00Z"}
    assert post_webhook(client, "orders/paid", shop.domain, payload).status_code == 200
    run_worker(redis)
    db.expire_all()
    event = db.scalars(select(WebhookEvent).where(WebhookEvent.topic == "orders/paid")).one()
    assert event.status == "failed" and "total_price is not an amount: 'lots'" in event.last_error
