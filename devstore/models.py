"""devstore's own state: one or more pretend Shopify stores, in an SQLite file (or memory for tests).

This is a stand-in for Shopify, not part of OnceCode: its schema is created with ``create_all``
(no migrations) and thrown away with a reset. Names follow Shopify's resources so that the GraphQL
and webhook layers can map them one to one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.db import UTCDateTime


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Store(Base):
    """One pretend shop, e.g. ``demo.myshopify.com``, with its plan's GraphQL bucket."""

    __tablename__ = "stores"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), default="owner@example.com")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    plan: Mapped[str] = mapped_column(String(32), default="standard")
    # Leaky bucket (Shopify's standard plan by default); see devstore/admin for enforcement.
    bucket_size: Mapped[float] = mapped_column(Float, default=2000.0)
    restore_rate: Mapped[float] = mapped_column(Float, default=100.0)
    # Switchable faults for tests: {"duplicate": bool, "delay": seconds, "drop": [topics] | true,
    # "graphql_5xx": n, "graphql_timeout": n, "graphql_throttle": n, "graphql_answer_lost": n,
    # "timeout_seconds": seconds}
    faults: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    next_order_number: Mapped[int] = mapped_column(Integer, default=1001)

    @property
    def numeric_id(self) -> int:
        """The shop's REST id (``gid://shopify/Shop/<id>``), derived from the domain so a reset keeps it."""
        digest = hashlib.sha256(self.domain.encode()).digest()
        return 10_000_000 + int.from_bytes(digest[:4], "big") % 90_000_000


class Installation(Base):
    """The app's grant on a store: scopes and the current (and previous) tokens."""

    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), unique=True)
    client_id: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(String(1000), default="")
    installed: Mapped[bool] = mapped_column(Boolean, default=True)
    access_token: Mapped[str | None] = mapped_column(String(255), index=True)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token: Mapped[str | None] = mapped_column(String(255))
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Shopify keeps the previous refresh token valid until the new one is first used.
    previous_refresh_token: Mapped[str | None] = mapped_column(String(255))
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class TokenExchange(Base):
    """One access token issued by token exchange (a session token traded in), counted per store."""

    __tablename__ = "token_exchanges"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    requested_token_type: Mapped[str] = mapped_column(String(255))
    expiring: Mapped[bool] = mapped_column(Boolean)
    subject_jti: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(String(1000))
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    # The default address as in the REST payload ({"id", "address1", "city", "zip", ...}).
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)


class Metafield(Base):
    __tablename__ = "metafields"
    __table_args__ = (UniqueConstraint("shop", "owner_id", "namespace", "key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"))
    owner_id: Mapped[str] = mapped_column(String(255))  # a GID, e.g. gid://shopify/Customer/1
    namespace: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)


class MetafieldDefinition(Base):
    __tablename__ = "metafield_definitions"
    __table_args__ = (UniqueConstraint("shop", "owner_type", "namespace", "key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"))
    owner_type: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    access: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    pinned_position: Mapped[int | None] = mapped_column(Integer)


class Discount(Base):
    """A code discount (``DiscountCodeBasic`` or ``DiscountCodeFreeShipping``) and its codes' rules."""

    __tablename__ = "discounts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "basic" | "free_shipping"
    title: Mapped[str] = mapped_column(String(255))
    value_type: Mapped[str] = mapped_column(String(32))  # "percentage" | "fixed_amount" | "free_shipping"
    value: Mapped[Decimal] = mapped_column(Numeric(14, 4), default=Decimal(0))  # fraction for percentage
    applies_on_each_item: Mapped[bool] = mapped_column(Boolean, default=False)
    minimum_subtotal: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    usage_limit: Mapped[int | None] = mapped_column(Integer)
    applies_once_per_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_ids: Mapped[list[int] | None] = mapped_column(JSON)  # None: all buyers
    combines_with: Mapped[dict[str, bool]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # DiscountCodeBasicInput.tags
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)

    def status(self, at: datetime | None = None) -> str:
        """Shopify's ``DiscountStatus``: ACTIVE, EXPIRED or SCHEDULED."""
        moment = at or now()
        if self.deactivated_at is not None and self.deactivated_at <= moment:
            return "EXPIRED"
        if self.ends_at is not None and self.ends_at <= moment:
            return "EXPIRED"
        if self.starts_at > moment:
            return "SCHEDULED"
        return "ACTIVE"


class DiscountCode(Base):
    """A redeem code of a discount; unique per store, compared case-insensitively."""

    __tablename__ = "discount_codes"
    __table_args__ = (UniqueConstraint("shop", "code_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"))
    discount_id: Mapped[int] = mapped_column(ForeignKey("discounts.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(255))  # as created
    code_key: Mapped[str] = mapped_column(String(255))  # upper case, for uniqueness and look-up
    usage_count: Mapped[int] = mapped_column(Integer, default=0)


class Job(Base):
    """An asynchronous job (the Admin API's ``Job``) that a bulk mutation started: it runs once ``run_at``
    has passed, then reads ``done``. Its id is a UUID, as in the ``gid://shopify/Job/<uuid>`` Shopify returns."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))  # the mutation that started it, e.g. discountCodeBulkDelete
    targets: Mapped[list[int]] = mapped_column(JSON, default=list)  # the ids it works on
    # What the targets belong to, where that matters: the discount whose redeem codes it deletes.
    parent_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RedeemCodeBulkCreation(Base):
    """One ``discountRedeemCodeBulkAdd`` (the Admin API's ``DiscountRedeemCodeBulkCreation``): the codes asked
    for, in order, and the job that adds them a moment later. It stays readable after its discount is gone."""

    __tablename__ = "redeem_code_bulk_creations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    discount_id: Mapped[int] = mapped_column(BigInteger)  # no foreign key: the discount may be deleted
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    imported_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)


class RedeemCodeBulkCreationCode(Base):
    """One code of a bulk creation (``DiscountRedeemCodeBulkCreationCode``): as asked for, and once the job
    has run, the redeem code it became or why it did not."""

    __tablename__ = "redeem_code_bulk_creation_codes"
    __table_args__ = (UniqueConstraint("creation_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    creation_id: Mapped[int] = mapped_column(ForeignKey("redeem_code_bulk_creations.id", ondelete="CASCADE"),
                                             index=True)
    position: Mapped[int] = mapped_column(Integer)  # the order the codes were given in
    code: Mapped[str] = mapped_column(Text)  # as given, even when too long or blank
    redeem_code_id: Mapped[int | None] = mapped_column(BigInteger)  # the DiscountCode created, if it was
    # [{"field": ["code"], "message": "...", "code": null}], DiscountUserErrors as Shopify reports them
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    email: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_price: Mapped[Decimal] = mapped_column(Numeric(14, 2))  # line items before discounts
    total_discounts: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    shipping_price: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    total_price: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    # [{"code": "ABC", "amount": "10.00", "type": "percentage"}], as in the webhook payload
    discount_codes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    # REST discount_applications, one per entry of discount_codes and in the same order.
    discount_applications: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # [{"id", "title", "price", "quantity", "sku", "discount_allocations": [{"amount", "discount_application_index"}]}]
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    token: Mapped[str] = mapped_column(String(64), default="")
    financial_status: Mapped[str] = mapped_column(String(32), default="paid")
    # Set once by a cancellation (``devstore.refunds``); the reason in REST form, e.g. "customer".
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    # The sum of the order's refunds' transactions: what the buyer got back.
    total_refunded: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # set through tagsAdd
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    def __init__(self, **values: Any) -> None:
        # A new order's payload is rendered before the insert that would apply the column default.
        values.setdefault("total_refunded", Decimal(0))
        super().__init__(**values)


class Refund(Base):
    """Money given back on an order (the REST ``Refund``): one refund transaction of ``amount``, and what it
    covers — line items (a cancellation refunds them all) and shipping. An amount refunded beyond what it
    covers is the order adjustment Shopify records as a refund discrepancy."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))  # the refund transaction
    # [{"id", "line_item_id", "quantity", "subtotal", "restock_type"}]
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The shipping refunded (what was paid for it, possibly 0.00); None: the refund leaves the shipping line.
    shipping: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    restock: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(100))  # GraphQL enum, e.g. CUSTOMERS_CREATE
    uri: Mapped[str] = mapped_column(String(2000))
    format: Mapped[str] = mapped_column(String(8), default="JSON")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)


class Delivery(Base):
    """One webhook delivery to one address, with its attempts: the store's webhook log."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(ForeignKey("stores.domain", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(100))  # REST style, e.g. customers/create
    uri: Mapped[str] = mapped_column(String(2000))
    event_id: Mapped[str] = mapped_column(String(64))
    webhook_id: Mapped[str] = mapped_column(String(64))
    triggered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed|dropped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
