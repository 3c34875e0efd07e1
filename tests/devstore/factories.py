"""Test data for devstore, written straight into its state (as the Admin API would leave it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from devstore.models import Discount, DiscountCode, WebhookSubscription
from devstore.state import State
from tests.devstore.conftest import SHOP


def subscribe(state: State, uri: str, topic: str = "CUSTOMERS_CREATE", shop: str = SHOP) -> int:
    """A webhook subscription as ``webhookSubscriptionCreate`` records it."""
    with state.session() as session:
        subscription = WebhookSubscription(id=State.new_id(), shop=shop, topic=topic, uri=uri)
        session.add(subscription)
    return subscription.id


def make_discount(state: State, code: str, shop: str = SHOP, value_type: str = "percentage",
                  value: str = "0.1", kind: str = "basic", **rules: Any) -> int:
    """A code discount with one code; ``rules`` set any other ``Discount`` column."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"starts_at": now - timedelta(days=1), "combines_with": {}}
    values.update(rules)
    with state.session() as session:
        discount = Discount(id=State.new_id(), shop=shop, kind=kind, title=f"Discount {code}",
                            value_type=value_type, value=Decimal(value), **values)
        session.add(discount)
        session.add(DiscountCode(id=State.new_id(), shop=shop, discount_id=discount.id, code=code,
                                 code_key=code.upper()))
    return discount.id


def add_codes(state: State, discount_id: int, *codes: str, shop: str = SHOP) -> None:
    """More redeem codes on a discount, as ``discountRedeemCodeBulkAdd`` leaves them."""
    with state.session() as session:
        session.add_all(DiscountCode(id=State.new_id(), shop=shop, discount_id=discount_id, code=code,
                                     code_key=code.upper()) for code in codes)


def usage_count(state: State, code: str, shop: str = SHOP) -> int:
    with state.session() as session:
        return session.scalar(select(DiscountCode.usage_count).where(DiscountCode.shop == shop,
                                                                     DiscountCode.code_key == code.upper())) or 0
