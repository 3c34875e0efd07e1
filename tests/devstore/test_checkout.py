"""Store rules at checkout: which codes a buyer may use, what they take off, and what an order records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from devstore import checkout
from devstore.errors import CodeRefused, Conflict, InvalidInput, NotFound
from devstore.models import Order, Store
from devstore.payloads import order_totals
from tests.devstore.conftest import OTHER_SHOP, SHOP
from tests.devstore.factories import add_codes, make_discount, usage_count

NOW = datetime.now(UTC)


def customer(state, email: str = "ada@example.com", shop: str = SHOP) -> int:  # type: ignore[no-untyped-def]
    with state.session() as session:
        return checkout.create_customer(session, shop, email=email, first_name="Ada").id


def order(state, *codes: str, amount: str = "100.00", customer_id: int | None = None,  # type: ignore[no-untyped-def]
          email: str | None = None, shipping: str = "10.00", shop: str = SHOP) -> Order:
    with state.session() as session:
        return checkout.place_order(session, shop, line_items=[{"title": "Thing", "price": amount, "quantity": 1}],
                                    codes=codes, customer_id=customer_id, email=email, shipping_price=shipping)


def refused(state, *codes: str, **kwargs) -> CodeRefused:  # type: ignore[no-untyped-def]
    with pytest.raises(CodeRefused) as caught:
        order(state, *codes, **kwargs)
    return caught.value


def test_a_single_use_code_works_once(state):
    make_discount(state, "ONCE-1", usage_limit=1)

    assert order(state, "ONCE-1").discount_codes == [{"code": "ONCE-1", "amount": "10.00", "type": "percentage"}]
    error = refused(state, "ONCE-1")

    assert error.rule == "usage_limit" and "ONCE-1" in str(error)
    assert usage_count(state, "ONCE-1") == 1


def test_codes_are_case_insensitive_and_recorded_as_typed(state):
    make_discount(state, "Welcome-AbC")

    placed = order(state, "welcome-abc")

    assert placed.discount_codes[0]["code"] == "welcome-abc"
    assert usage_count(state, "WELCOME-ABC") == 1


def test_a_customer_locked_code_is_only_for_its_customer(state):
    owner, stranger = customer(state, "owner@example.com"), customer(state, "stranger@example.com")
    make_discount(state, "LOCKED", customer_ids=[owner])

    assert refused(state, "LOCKED", customer_id=stranger).rule == "customer_restricted"
    assert refused(state, "LOCKED", email="owner@example.com").rule == "customer_restricted"  # a guest
    assert order(state, "LOCKED", customer_id=owner).total_discounts == 10


def test_once_per_customer_counts_each_customer_and_guest_email(state):
    ada, bob = customer(state, "ada@example.com"), customer(state, "bob@example.com")
    make_discount(state, "ONE-EACH", applies_once_per_customer=True)

    order(state, "ONE-EACH", customer_id=ada)
    assert refused(state, "one-each", customer_id=ada).rule == "once_per_customer"
    order(state, "ONE-EACH", customer_id=bob)
    order(state, "ONE-EACH", email="guest@example.com")
    assert refused(state, "ONE-EACH", email="GUEST@example.com").rule == "once_per_customer"
    assert refused(state, "ONE-EACH").rule == "once_per_customer"  # a guest without an email
    assert usage_count(state, "ONE-EACH") == 3


def test_a_discount_with_many_codes_limits_each_code_not_their_total(state):
    pool = make_discount(state, "POOL-A", usage_limit=1)
    add_codes(state, pool, "POOL-B", "POOL-C")

    order(state, "POOL-A")
    assert refused(state, "pool-a").rule == "usage_limit"
    order(state, "POOL-B")
    order(state, "pool-c")
    assert refused(state, "POOL-B").rule == "usage_limit"
    assert [usage_count(state, c) for c in ("POOL-A", "POOL-B", "POOL-C")] == [1, 1, 1]


def test_a_usage_limit_above_one_counts_each_code_separately(state):
    pool = make_discount(state, "TWICE-A", usage_limit=2)
    add_codes(state, pool, "TWICE-B")

    for _ in range(2):
        order(state, "TWICE-A")
    assert refused(state, "TWICE-A").rule == "usage_limit"
    order(state, "TWICE-B")
    order(state, "TWICE-B")
    assert refused(state, "TWICE-B").rule == "usage_limit"


def test_once_per_customer_applies_to_each_code_of_a_discount(state):
    ada, bob = customer(state, "ada@example.com"), customer(state, "bob@example.com")
    pool = make_discount(state, "EACH-X", applies_once_per_customer=True)
    add_codes(state, pool, "EACH-Y")

    order(state, "EACH-X", customer_id=ada)
    assert refused(state, "each-x", customer_id=ada).rule == "once_per_customer"
    order(state, "EACH-Y", customer_id=ada)  # another code of the same discount: another use
    assert refused(state, "EACH-Y", customer_id=ada).rule == "once_per_customer"
    order(state, "EACH-X", customer_id=bob)
    order(state, "EACH-Y", email="guest@example.com")
    assert refused(state, "each-y", email="Guest@Example.com").rule == "once_per_customer"
    order(state, "EACH-X", email="guest@example.com")


@pytest.mark.parametrize(("rules", "rule"), [
    ({"ends_at": NOW - timedelta(minutes=1)}, "expired"),
    ({"deactivated_at": NOW - timedelta(minutes=1)}, "deactivated"),
    ({"starts_at": NOW + timedelta(days=1)}, "scheduled"),
])
def test_inactive_codes_are_refused(state, rules, rule):
    make_discount(state, "NOT-NOW", **rules)

    assert refused(state, "NOT-NOW").rule == rule


def test_a_code_ending_later_still_works(state):
    make_discount(state, "STILL", ends_at=NOW + timedelta(hours=1))

    assert order(state, "STILL").total_discounts == 10


def test_the_minimum_subtotal_is_checked_before_discounts(state):
    make_discount(state, "MIN50", minimum_subtotal=50)

    error = refused(state, "MIN50", amount="49.99")
    assert error.rule == "minimum_subtotal" and "50.00" in str(error)
    assert order(state, "MIN50", amount="50.00").total_discounts == 5


def test_an_unknown_code_is_refused_and_changes_nothing(state):
    make_discount(state, "REAL", usage_limit=1)

    assert refused(state, "REAL", "MADE-UP").rule == "unknown_code"

    assert usage_count(state, "REAL") == 0
    with state.session() as session:
        assert session.scalars(select(Order)).all() == []
        assert session.get(Store, SHOP).next_order_number == 1001


@pytest.mark.parametrize(("value_type", "value", "kind", "amount", "shipping", "expected"), [
    ("percentage", "0.1", "basic", "123.45", "10.00", ("12.35", "percentage", "121.10", "111.10")),
    ("percentage", "0.25", "basic", "80.00", "0.00", ("20.00", "percentage", "60.00", "60.00")),
    ("fixed_amount", "15", "basic", "100.00", "10.00", ("15.00", "fixed_amount", "95.00", "85.00")),
    ("fixed_amount", "15", "basic", "10.00", "5.00", ("10.00", "fixed_amount", "5.00", "0.00")),
    ("free_shipping", "0", "free_shipping", "40.00", "7.50", ("7.50", "shipping", "40.00", "40.00")),
])
def test_amounts_and_totals(state, value_type, value, kind, amount, shipping, expected):
    make_discount(state, "SAVE", value_type=value_type, value=value, kind=kind)
    discount, kind_name, total, subtotal_after = expected

    placed = order(state, "SAVE", amount=amount, shipping=shipping)

    assert placed.discount_codes == [{"code": "SAVE", "amount": discount, "type": kind_name}]
    assert str(placed.total_discounts) == discount
    assert str(placed.total_price) == total
    assert str(placed.subtotal_price) == amount  # the model keeps the pre-discount subtotal
    assert str(order_totals(placed)["subtotal_price"]) == subtotal_after  # Shopify's: after order discounts


def test_order_discounts_are_allocated_over_the_line_items(state):
    make_discount(state, "TENTH")
    with state.session() as session:
        placed = checkout.place_order(session, SHOP, codes=["TENTH"], line_items=[
            {"title": "A", "price": "33.33", "quantity": 1}, {"title": "B", "price": "16.67", "quantity": 2}])

    allocations = [item["discount_allocations"] for item in placed.line_items]
    assert str(placed.total_discounts) == "6.67"
    assert sum(float(a[0]["amount"]) for a in allocations) == pytest.approx(6.67)
    assert all(a[0]["discount_application_index"] == 0 for a in allocations)


@pytest.mark.parametrize(("first", "second", "allowed"), [
    ({}, {}, False),
    ({"orderDiscounts": True}, {}, False),
    ({"orderDiscounts": True}, {"orderDiscounts": True}, True),
])
def test_codes_combine_only_when_both_allow_it(state, first, second, allowed):
    make_discount(state, "FIRST", combines_with=first)
    make_discount(state, "SECOND", value_type="fixed_amount", value="5", combines_with=second)

    if allowed:
        assert str(order(state, "FIRST", "SECOND").total_discounts) == "15.00"
    else:
        assert refused(state, "FIRST", "SECOND").rule == "combination"


def test_free_shipping_combines_with_an_order_discount_that_allows_it(state):
    make_discount(state, "SHIP", kind="free_shipping", value_type="free_shipping", value="0",
                  combines_with={"orderDiscounts": True})
    make_discount(state, "TEN", combines_with={"shippingDiscounts": True})

    placed = order(state, "SHIP", "TEN", amount="50.00", shipping="6.00")

    assert [entry["type"] for entry in placed.discount_codes] == ["shipping", "percentage"]
    assert (str(placed.total_discounts), str(placed.total_price)) == ("11.00", "45.00")


def test_the_same_code_twice_on_one_order_is_refused(state):
    make_discount(state, "TWICE")

    assert refused(state, "TWICE", "twice").rule == "duplicate_code"


def test_orders_are_numbered_per_store(state):
    assert [order(state).number for _ in range(2)] == [1001, 1002]
    assert order(state, shop=OTHER_SHOP).number == 1001


@pytest.mark.parametrize("items", [[], [{"title": "A", "price": "-1"}], [{"title": "A", "price": "1.001"}],
                                   [{"title": "A", "price": "x"}], [{"title": "A", "price": "1", "quantity": 0}]])
def test_bad_line_items_are_invalid_input(state, items):
    with state.session() as session, pytest.raises(InvalidInput):
        checkout.place_order(session, SHOP, line_items=items)


def test_an_unknown_customer_is_not_found(state):
    with pytest.raises(NotFound):
        order(state, customer_id=12345)
    with pytest.raises(NotFound):
        order(state, customer_id=customer(state, shop=OTHER_SHOP))


def test_customer_emails_are_unique_per_store(state):
    customer(state, "ada@example.com")
    customer(state, "ada@example.com", shop=OTHER_SHOP)
    with pytest.raises(Conflict):
        customer(state, "ADA@example.com")
