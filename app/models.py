"""Typed models. They hold data and tiny pure helpers; no HTTP, no enqueueing.

Business rules live here as database constraints (unique keys, checks) so that idempotency holds
however many workers race: insert, and treat a unique-key conflict as "someone did it already".
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.codes.generator import DEFAULT_ALPHABET
from app.db import Base, UTCDateTime, utcnow

PROGRAM_KINDS = ("welcome", "referral_friend", "referral_reward", "manual")
VALUE_TYPES = ("percentage", "fixed_amount", "free_shipping")
CODE_STATUSES = ("reserved", "created", "attached", "redeemed", "expired", "revoked", "failed")
EVENT_STATUSES = ("pending", "processed", "failed", "ignored")
ORDER_SOURCES = ("webhook", "catch_up")
LINK_STATUSES = ("active", "retired")
# A code is "open" while it can still be used: on its way or on the store, not yet used or ended.
OPEN_STATUSES = ("reserved", "created", "attached")
# A code whose discount was created on the store and not removed from it since.
ON_STORE = "discount_gid IS NOT NULL AND removed_from_store_at IS NULL"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Shop(Timestamped, Base):
    """A store that installed the app. Tokens are Fernet ciphertext (see ``app/shopify/tokens.py``)."""

    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scopes: Mapped[str] = mapped_column(String(1000), default="")
    api_version: Mapped[str] = mapped_column(String(20))
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    uninstalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Post-install work (webhook subscriptions, default programs) finished for the current install.
    setup_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    setup_error: Mapped[str | None] = mapped_column(Text)
    # The webhook topics the last completed setup subscribed (``app.queues.topics_key``); when the app
    # handles more topics, the sweep sets up the shop again to subscribe the new ones.
    webhook_topics: Mapped[str | None] = mapped_column(String(1000))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The store's time zone (Shopify's ``shop.ianaTimezone``, read by catch-up): the metrics' days.
    iana_timezone: Mapped[str | None] = mapped_column(String(64))
    # The time zone whose days ``code_tallies`` holds for this shop (``app.codes.tallies``); None until
    # they are first built. While it differs from the store's, the metrics read the codes themselves.
    tally_zone: Mapped[str | None] = mapped_column(String(64))

    programs: Mapped[list[Program]] = relationship(back_populates="shop", cascade="all, delete-orphan",
                                                   passive_deletes=True)

    @property
    def is_installed(self) -> bool:
        return self.uninstalled_at is None and self.access_token is not None


class Program(Timestamped, Base):
    """A campaign: what kind of code, worth what, valid how long, formatted how.

    The code format columns are those of ``app.codes.generator.CodeFormat``; ``app.codes.programs``
    validates every change against it.
    """

    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint(_in("kind", PROGRAM_KINDS), name="kind"),
        CheckConstraint(_in("value_type", VALUE_TYPES), name="value_type"),
        CheckConstraint(
            "(value_type = 'percentage' AND value > 0 AND value <= 100)"
            " OR (value_type = 'fixed_amount' AND value > 0)"
            " OR (value_type = 'free_shipping' AND value = 0)",
            name="value_range",
        ),
        CheckConstraint("minimum_subtotal IS NULL OR minimum_subtotal > 0", name="minimum_subtotal"),
        CheckConstraint("expires_after_days IS NULL OR expires_after_days > 0", name="expiry"),
        CheckConstraint("code_length BETWEEN 6 AND 32", name="code_length"),
        # One welcome / referral program per shop; any number of manual ones.
        Index("uq_programs_shop_kind", "shop_id", "kind", unique=True,
              postgresql_where=text("kind <> 'manual'"), sqlite_where=text("kind <> 'manual'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    value_type: Mapped[str] = mapped_column(String(32))
    # Percent for "percentage" (10 = 10 %), shop currency for "fixed_amount", 0 for free shipping.
    value: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    minimum_subtotal: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    expires_after_days: Mapped[int | None] = mapped_column(Integer)
    code_prefix: Mapped[str] = mapped_column(String(16), default="")
    code_length: Mapped[int] = mapped_column(Integer, default=10)  # random characters, unless a pattern is set
    code_alphabet: Mapped[str] = mapped_column(String(64), default=DEFAULT_ALPHABET, server_default=DEFAULT_ALPHABET)
    code_pattern: Mapped[str | None] = mapped_column(String(64))  # e.g. "####-####"; replaces code_length
    # Where a code's shareable link lands on the store (e.g. "/collections/sale"); None: the home page.
    redirect_path: Mapped[str | None] = mapped_column(String(255))
    lock_to_customer: Mapped[bool] = mapped_column(Boolean, default=True)
    combines_with_product: Mapped[bool] = mapped_column(Boolean, default=False)
    combines_with_order: Mapped[bool] = mapped_column(Boolean, default=False)
    combines_with_shipping: Mapped[bool] = mapped_column(Boolean, default=True)
    # Friend code pools (referral_friend programs, ``app.codes.pools``): when fewer codes than
    # ``pool_low_water`` are left to hand out, a job tops the pool up to ``pool_size``; a pool discount
    # hands codes out for ``pool_window_days``, then the next one takes over.
    pool_low_water: Mapped[int] = mapped_column(Integer, default=200, server_default="200")
    pool_size: Mapped[int] = mapped_column(Integer, default=1000, server_default="1000")
    pool_window_days: Mapped[int] = mapped_column(Integer, default=7, server_default="7")
    # Landing caps (referral_friend programs, ``app.codes.landing``; 0 turns a cap off): friend codes one
    # link may hand out in 24 hours, and one client address in an hour.
    friend_codes_per_link_per_day: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    friend_codes_per_address_per_hour: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    # Rewards (referral_reward programs, ``app.codes.rewards``): a referred order is held ``hold_days``
    # (0: rewarded at once); cancelled, or refunded beyond ``void_refund_percent`` of its total, within
    # the hold, it earns nothing. ``first_order_only``: only a friend's first paid order is rewarded;
    # ``block_same_email``: an order whose buyer has the advocate's (normalised) email is not;
    # ``rewards_per_advocate_per_month`` caps an advocate's rewards in a calendar month (0: no cap).
    hold_days: Mapped[int] = mapped_column(Integer, default=14, server_default="14")
    void_refund_percent: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    first_order_only: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    block_same_email: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    rewards_per_advocate_per_month: Mapped[int] = mapped_column(Integer, default=10, server_default="10")

    shop: Mapped[Shop] = relationship(back_populates="programs")


POOL_STATUSES = ("active", "retired", "removed")
POOL_CODE_STATUSES = ("anchor", "pending", "available", "handed_out", "redeemed", "failed", "expired", "removed")


class CodePool(Timestamped, Base):
    """One pool discount: a discount on the store holding many single-use friend codes (``app.codes.pools``).

    ``terms`` is the referral-friend program's offer, expiry and code format as they stood when the
    pool was started (``terms_key`` is their digest): every code of the pool has them, whatever the
    merchant changes later. The pool hands codes out from ``hands_out_from`` until ``hands_out_until``;
    its discount ends ``expires_after_days`` after that (``ends_at``), so that a code handed out at the
    last moment still lives its full expiry. ``status``: ``active`` (handing out, or about to),
    ``retired`` (its window is over or its terms were replaced; its codes still live on the store),
    ``removed`` (its discount was deleted from the store).
    """

    __tablename__ = "code_pools"
    __table_args__ = (
        CheckConstraint(_in("status", POOL_STATUSES), name="status"),
        CheckConstraint("hands_out_until > hands_out_from", name="window"),
        CheckConstraint("expires_after_days IS NULL OR expires_after_days > 0", name="expiry"),
        UniqueConstraint("shop_id", "program_id", "terms_key", "hands_out_from"),
        Index("ix_code_pools_shop_program_status", "shop_id", "program_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    terms_key: Mapped[str] = mapped_column(String(64))
    expires_after_days: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    hands_out_from: Mapped[datetime] = mapped_column(UTCDateTime)
    hands_out_until: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the discount's endsAt (None: no expiry)
    # The discount on the store (``gid://shopify/DiscountCodeNode/...``), created with the pool's first code.
    discount_gid: Mapped[str | None] = mapped_column(String(255))
    first_code: Mapped[str] = mapped_column(String(64))
    create_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Admin API points this pool has cost so far (Shopify's actual cost of each call made for it).
    points_spent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    store_removal_job: Mapped[str | None] = mapped_column(String(255))
    removed_from_store_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class PoolBulkCreation(Base):
    """What one ``discountRedeemCodeBulkAdd`` did: the codes sent, then the store's counts once done.

    The row is written before the call (``gid`` None) so that a crash between the store's answer and
    our commit is known: ``attempts`` > 1 means an earlier send of the same codes may have landed.
    """

    __tablename__ = "pool_bulk_creations"
    __table_args__ = (Index("ix_pool_bulk_creations_pool", "shop_id", "pool_id", "done"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("code_pools.id", ondelete="CASCADE"))
    gid: Mapped[str | None] = mapped_column(String(255))  # gid://shopify/DiscountRedeemCodeBulkCreation/...
    requested: Mapped[int] = mapped_column(Integer)
    imported: Mapped[int | None] = mapped_column(Integer)
    failed: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How far its codes' redeem code ids (needed to delete single codes) have been read, in its order.
    codes_read: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    codes_cursor: Mapped[str | None] = mapped_column(String(2000))


POOL_CODE_HANDED_OUT = "status = 'handed_out'"
POOL_CODE_AVAILABLE = "status = 'available'"
POOL_CODE_VISITOR = "visitor IS NOT NULL"


class PoolCode(Base):
    """One single-use friend code of a pool: drawn (``pending``), on the store (``available``), given to
    a visitor (``handed_out``, with its own ``expires_at``), then ``expired``/``removed``; ``failed``
    when the store refused it (``error`` says why; a fresh code replaces it). The code the pool discount
    was created with is its ``anchor``: never handed out (it is in no bulk creation, so its redeem code
    id could not be read cheaply to delete it alone), it leaves with the discount.

    ``visitor`` is the landing's key for the browser that got the code: one code per visitor and program.
    """

    __tablename__ = "pool_codes"
    __table_args__ = (
        CheckConstraint(_in("status", POOL_CODE_STATUSES), name="status"),
        CheckConstraint("code = upper(code)", name="code_upper"),
        UniqueConstraint("shop_id", "code"),
        # The landing takes the oldest available code of the current pools, reading this index only.
        Index("ix_pool_codes_available", "pool_id", "id",
              postgresql_where=text(POOL_CODE_AVAILABLE), sqlite_where=text(POOL_CODE_AVAILABLE)),
        Index("uq_pool_codes_visitor", "shop_id", "program_id", "visitor", unique=True,
              postgresql_where=text(POOL_CODE_VISITOR), sqlite_where=text(POOL_CODE_VISITOR)),
        # The expiry sweep finds handed-out codes past their end without reading the others.
        Index("ix_pool_codes_handed_out_expiry", "shop_id", "expires_at",
              postgresql_where=text(POOL_CODE_HANDED_OUT), sqlite_where=text(POOL_CODE_HANDED_OUT)),
        Index("ix_pool_codes_creation", "bulk_creation_id"),
        # The per-link daily cap counts the link's codes of the last 24 hours from this index.
        Index("ix_pool_codes_link", "link_id", "handed_out_at",
              postgresql_where=text("link_id IS NOT NULL"), sqlite_where=text("link_id IS NOT NULL")),
        # The referral metrics count a shop's friend codes handed out in a range.
        Index("ix_pool_codes_shop_handed_out", "shop_id", "handed_out_at",
              postgresql_where=text("handed_out_at IS NOT NULL"), sqlite_where=text("handed_out_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("code_pools.id", ondelete="CASCADE"))
    bulk_creation_id: Mapped[int | None] = mapped_column(ForeignKey("pool_bulk_creations.id", ondelete="SET NULL"))
    code: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    visitor: Mapped[str | None] = mapped_column(String(128))
    handed_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The code's own id on the store (``gid://shopify/DiscountRedeemCode/...``), read only when needed.
    redeem_code_gid: Mapped[str | None] = mapped_column(String(255))
    store_removal_job: Mapped[str | None] = mapped_column(String(255))
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # The referral link whose landing handed the code out (None: taken otherwise, or the link is gone).
    link_id: Mapped[int | None] = mapped_column(ForeignKey("referral_links.id", ondelete="SET NULL"))
    # Set by reconciliation when a paid order used the code (``redeemed``): the order that did.
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Customer(Base):
    """A store customer we know of. Deliberately no name, email or phone: nothing personal to leak."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("shop_id", "shopify_customer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    shopify_customer_id: Mapped[int] = mapped_column(BigInteger)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # HMAC-SHA256 (key ``EMAIL_HASH_KEY``) of the customer's normalised email, hex; never the email itself.
    # Only for the self-referral check (``app.codes.fingerprints``); erased with the row on customers/redact.
    email_hash: Mapped[str | None] = mapped_column(String(64))


class ReferralLink(Base):
    """A customer's referral link, ``APP_URL/r/{token}`` (see ``app.codes.referrals``).

    The token is 128 random bits from ``secrets``, never derived from the customer. A customer has at
    most one ``active`` link (the partial unique index is what makes creation idempotent under races)
    and any number of ``retired`` ones: a retired link keeps its token, so that opening it says the
    link is no longer active instead of "unknown". ``synced_at`` is when the customer's
    ``referral_link`` metafield was last made to agree with this link's status (written while active,
    removed once retired); ``None`` means a job still has to, and is set again by each change of
    status. ``last_error`` says why the store refused. ``customers/redact`` retires the customer's links
    and the row loses its customer (the anonymous click count stays).
    """

    __tablename__ = "referral_links"
    __table_args__ = (
        CheckConstraint(_in("status", LINK_STATUSES), name="status"),
        CheckConstraint("(status = 'retired') = (retired_at IS NOT NULL)", name="retired_at"),
        Index("uq_referral_links_active_customer", "shop_id", "customer_id", unique=True,
              postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'")),
        Index("ix_referral_links_shop", "shop_id", "id"),
        Index("ix_referral_links_customer", "customer_id"),
        # The sweep finds links whose metafield job was lost without reading the others.
        Index("ix_referral_links_unsynced", "shop_id",
              postgresql_where=text("synced_at IS NULL"), sqlite_where=text("synced_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    token: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


REFERRAL_BLOCK_REASONS = ("link_daily_cap", "address_hourly_cap")


class ReferralBlock(Base):
    """A friend code the landing refused to hand out, and why (``REFERRAL_BLOCK_REASONS``): what the
    merchant sees of the fraud caps. No client address is kept: the reason and the link say enough."""

    __tablename__ = "referral_blocks"
    __table_args__ = (
        CheckConstraint(_in("reason", REFERRAL_BLOCK_REASONS), name="reason"),
        Index("ix_referral_blocks_shop", "shop_id", "id"),
        Index("ix_referral_blocks_link", "link_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("referral_links.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReferralClickHour(Base):
    """Clicks on one link in one hour (UTC), and how many came from a browser new to the landing: the
    funnel's first step, summed into any time zone's days. Hours, not clicks: a row per link and hour."""

    __tablename__ = "referral_click_hours"
    __table_args__ = (
        UniqueConstraint("link_id", "hour"),
        Index("ix_referral_click_hours_shop", "shop_id", "hour"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    link_id: Mapped[int] = mapped_column(ForeignKey("referral_links.id", ondelete="CASCADE"))
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    visitors: Mapped[int] = mapped_column(Integer, default=0)


REFERRAL_STATUSES = ("held", "rewarded", "voided", "blocked")
# Why a referral earns no reward. Blocked at reconciliation (the fraud controls): ``self_referral`` (the
# buyer is the advocate), ``same_email`` (the buyer has the advocate's normalised email),
# ``not_first_order`` (the buyer had paid an order before), ``advocate_monthly_cap``, ``no_advocate``
# (the link's customer was erased). Voided later: ``order_cancelled``, ``order_refunded`` (within the
# hold), ``reward_program_off`` (when the hold ended), ``advocate_erased``.
REFERRAL_REASONS = ("self_referral", "same_email", "not_first_order", "advocate_monthly_cap", "no_advocate",
                    "order_cancelled", "order_refunded", "reward_program_off", "advocate_erased")
REFERRAL_HELD = "status = 'held'"


class Referral(Base):
    """A paid order that used a friend code: one per order (``shopify_order_id``), recorded by
    reconciliation with the advocate whose link handed the code out. ``held`` until ``hold_until``, then
    ``rewarded`` (``reward_code_id``: the advocate's code, issued exactly once) or ``voided``; ``blocked``
    at once by a fraud control. ``reason`` says why it was voided or blocked. Nothing personal of the
    friend is kept but their Shopify customer id (erased on ``customers/redact``)."""

    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint(_in("status", REFERRAL_STATUSES), name="status"),
        CheckConstraint(f"reason IS NULL OR {_in('reason', REFERRAL_REASONS)}", name="reason"),
        CheckConstraint("(status IN ('voided', 'blocked')) = (reason IS NOT NULL)", name="status_reason"),
        UniqueConstraint("shop_id", "shopify_order_id"),
        Index("ix_referrals_shop_created", "shop_id", "created_at"),
        Index("ix_referrals_shop_ordered", "shop_id", "ordered_at"),  # the metrics' range (migration 0018)
        Index("ix_referrals_shop_status", "shop_id", "status", "id"),  # the list filtered by a rare status
        Index("ix_referrals_advocate", "shop_id", "advocate_id", "created_at"),
        Index("ix_referrals_link", "link_id"),
        # The scheduled release reads only the held ones whose hold has ended.
        Index("ix_referrals_held", "shop_id", "hold_until",
              postgresql_where=text(REFERRAL_HELD), sqlite_where=text(REFERRAL_HELD)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    program_id: Mapped[int | None] = mapped_column(ForeignKey("programs.id", ondelete="SET NULL"))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("referral_links.id", ondelete="SET NULL"))
    advocate_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    pool_code_id: Mapped[int | None] = mapped_column(ForeignKey("pool_codes.id", ondelete="SET NULL"))
    friend_code: Mapped[str] = mapped_column(String(64))
    friend_customer_id: Mapped[int | None] = mapped_column(BigInteger)  # Shopify's id of the buyer
    shopify_order_id: Mapped[int] = mapped_column(BigInteger)
    order_name: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    order_total: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    discount_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the order's processed_at
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    hold_until: Mapped[datetime] = mapped_column(UTCDateTime)
    reward_code_id: Mapped[int | None] = mapped_column(ForeignKey("issued_codes.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IssuedCode(Timestamped, Base):
    """One unique single-use code, from reservation to redemption (see DESIGN.md, exactly-once).

    ``terms`` is the program's offer as it stood when the code was reserved (value, minimum,
    combinations, lock): the code is created on the store with these, however often the job is
    retried and whatever the merchant changes meanwhile. ``create_attempts`` counts the creates
    sent to the store, so that a retry knows whether one may have landed and must look first.
    ``claimed_by``/``claim_expires_at`` say which job is working on the row; they only spare
    duplicate work, correctness never depends on them (see ``app.codes.issuance``).
    """

    __tablename__ = "issued_codes"
    __table_args__ = (
        CheckConstraint(_in("status", CODE_STATUSES), name="status"),
        CheckConstraint("code = upper(code)", name="code_upper"),
        UniqueConstraint("shop_id", "code"),
        UniqueConstraint("shop_id", "idempotency_key"),
        Index("ix_issued_codes_customer", "customer_id"),
        Index("ix_issued_codes_shop_status", "shop_id", "status", "id"),
        # The admin's codes list, newest first by issue time, filtered by status or by program: the page
        # of a filter whose codes are all old is found without walking the newer ones.
        Index("ix_issued_codes_shop_status_issued", "shop_id", "status", "issued_at"),
        Index("ix_issued_codes_shop_program_issued", "shop_id", "program_id", "issued_at"),
        # Metrics over a date range read these indexes only (PostgreSQL: index-only scans with the
        # included columns), so their cost follows the codes in the range, not all the shop's codes.
        Index("ix_issued_codes_shop_issued", "shop_id", "issued_at",
              postgresql_include=["status", "program_id", "redeemed_at"]),
        Index("ix_issued_codes_shop_redeemed", "shop_id", "redeemed_at",
              postgresql_where=text("redeemed_at IS NOT NULL"), sqlite_where=text("redeemed_at IS NOT NULL"),
              postgresql_include=["issued_at", "program_id", "order_id", "order_total", "discount_amount",
                                  "currency"]),
        # An order's codes: the tallies' triggers count an order once per program (migration 0018).
        Index("ix_issued_codes_shop_order", "shop_id", "order_id",
              postgresql_where=text("order_id IS NOT NULL"), sqlite_where=text("order_id IS NOT NULL")),
        # The expiry sweep finds a shop's open codes past their end without reading the others.
        Index("ix_issued_codes_shop_open_expiry", "shop_id", "expires_at",
              postgresql_where=text("status IN ('created', 'attached') AND expires_at IS NOT NULL"),
              sqlite_where=text("status IN ('created', 'attached') AND expires_at IS NOT NULL")),
        # The codes still on the store: counted for the store's cap, and the clean-up finds the
        # expired and revoked ones among them, without reading the codes already removed.
        Index("ix_issued_codes_shop_on_store", "shop_id", "status",
              postgresql_where=text(ON_STORE), sqlite_where=text(ON_STORE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    code: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="reserved")
    terms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    discount_gid: Mapped[str | None] = mapped_column(String(255))
    create_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the code's metafields were written to the customer (the tag comes next, then attached_at).
    metafields_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the store confirmed the deactivation of a revoked code (None: still to do).
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a revoked code was taken off its customer (metafields moved on or deleted, tag removed if
    # it was the last open code of its kind); None: still to do, or nothing was ever attached.
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The store clean-up (``app.codes.cleanup``): the Shopify bulk-delete job that is removing the
    # discount (its ``gid://shopify/Job/...``), then the moment the store confirmed it gone. The row
    # and its history stay; only the discount leaves the merchant's admin.
    store_removal_job: Mapped[str | None] = mapped_column(String(255))
    removed_from_store_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The redemption, recorded once (``app.codes.reconciliation``): the paid order that used the code.
    # Money is in the shop's currency (``currency``); ``redeemed_at`` is the order's processed time.
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    order_name: Mapped[str | None] = mapped_column(String(64))
    order_total: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    order_subtotal: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    # What this code took off the order; None when Shopify did not say (see reconciliation).
    discount_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    last_error: Mapped[str | None] = mapped_column(Text)

    program: Mapped[Program] = relationship()
    customer: Mapped[Customer | None] = relationship()


class PaidOrder(Base):
    """A paid order of the shop, as reconciled once: the figures metrics need, nothing personal.

    Every paid order seen is kept, with or without our codes, so that the average order value with
    and without them compares like with like. Money is in the shop's currency (``currency``);
    ``paid_at`` is Shopify's ``processed_at`` (neither the webhook nor the orders query gives a
    payment time), the same for an order whichever way it reached us.
    """

    __tablename__ = "paid_orders"
    __table_args__ = (
        CheckConstraint(_in("source", ORDER_SOURCES), name="source"),
        UniqueConstraint("shop_id", "shopify_order_id"),
        Index("ix_paid_orders_shop_paid", "shop_id", "paid_at",
              postgresql_include=["currency", "our_codes", "total_price"]),
        Index("ix_paid_orders_customer", "shop_id", "shopify_customer_id", "paid_at",
              postgresql_where=text("shopify_customer_id IS NOT NULL"),
              sqlite_where=text("shopify_customer_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    shopify_order_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    total_price: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    subtotal_price: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    total_discounts: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    our_codes: Mapped[int] = mapped_column(Integer)  # entries of discount_codes that are codes we issued
    other_codes: Mapped[int] = mapped_column(Integer)  # the rest (the merchant's own codes)
    source: Mapped[str] = mapped_column(String(16))  # which path recorded it first
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What happened to the order after it was paid (``app.codes.order_changes``), copied here from
    # ``order_cancellations`` and ``order_refunds`` whichever arrived first: the order's cancellation,
    # and the sum of its refunds in the shop's currency (0 when none).
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0.00"), server_default="0")
    # The buyer (None for a guest checkout): the referral check "the friend had paid an order before".
    shopify_customer_id: Mapped[int | None] = mapped_column(BigInteger)


# The figures of ``code_tallies`` (migration 0018 writes them; ``app.codes.metrics`` reads them).
CODE_TALLY_FIGURES = ("codes_issued", "redeemed_of_issued", "codes_redeemed", "discounts_known", "discount", "orders",
                      "revenue", "orders_without_codes", "revenue_without_codes")
FRIEND_TALLY_FIGURES = ("friend_code_orders", "friend_code_revenue", "friend_discounts_known", "friend_discount")
LOOP_TALLY_FIGURES = ("link_clicks", "unique_visitors", "friend_codes", "friend_orders", "referred_revenue",
                      "rewarded_revenue", "rewards_pending", "rewards_issued", "rewards_voided", "rewards_blocked")
TALLY_FIGURES = (*CODE_TALLY_FIGURES, *FRIEND_TALLY_FIGURES, *LOOP_TALLY_FIGURES)
TALLY_MONEY = ("discount", "revenue", "revenue_without_codes", "friend_code_revenue", "friend_discount",
               "referred_revenue", "rewarded_revenue")


class TallyFigures:
    """The columns ``code_tallies`` and ``code_tally_changes`` share: each a sum over the rows of its group."""

    codes_issued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    redeemed_of_issued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    codes_redeemed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    discounts_known: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    discount: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    orders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    revenue: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    orders_without_codes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    revenue_without_codes: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    friend_code_orders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    friend_code_revenue: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    friend_discounts_known: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    friend_discount: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    link_clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    unique_visitors: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    friend_codes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    friend_orders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    referred_revenue: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    rewarded_revenue: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=Decimal(0), server_default="0")
    rewards_pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rewards_issued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rewards_voided: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rewards_blocked: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CodeTally(TallyFigures, Base):
    """The metrics' figures of one day of the shop (in its ``Shop.tally_zone``), program, currency and
    detail, summed from its rows (``app.codes.tallies``), so that a year's report reads a few thousand
    rows rather than a million codes.

    - A program's codes: issued that day (and how many of them are redeemed by now), redeemed that day
      with their discount, the orders that used them (an order once per program), ``currency`` '' for
      the issued ones.
    - ``program_id`` 0: the shop's paid orders (``orders``/``revenue`` with our codes, and
      ``..._without_codes``), and the clicks on its referral links and their new visitors.
    - Referrals, by the day of their order: for the referral's program, the friend orders, their
      revenue and their rewards by status (``detail`` the reason of a voided or blocked one; program 0
      when the program is gone); for the friend code's program, its orders, revenue and discount
      (``friend_code_...``); the friend codes handed out, for their program.

    Written by the fold only: triggers record every change in ``code_tally_changes`` first.
    """

    __tablename__ = "code_tallies"
    __table_args__ = (UniqueConstraint("shop_id", "day", "program_id", "currency", "detail"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    program_id: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    detail: Mapped[str] = mapped_column(String(32))


class CodeTallyChange(TallyFigures, Base):
    """What one statement changed in the figures of ``code_tallies``, by quarter hour (UTC) rather than
    day, so that it can be folded into any time zone's days. Appended by PostgreSQL triggers (migration
    0018) and folded into ``code_tallies`` every minute: writers never wait on each other for a day's
    row. No foreign key: a shop deleted with its rows leaves changes that the fold drops."""

    __tablename__ = "code_tally_changes"
    __table_args__ = (Index("ix_code_tally_changes_shop_at", "shop_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    shop_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    program_id: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    detail: Mapped[str] = mapped_column(String(32))


class OrderCancellation(Base):
    """An ``orders/cancelled`` seen for an order, kept by the Shopify order id whether or not the paid
    order is recorded yet (webhooks arrive in any order): reconciliation copies it onto the
    ``paid_orders`` row when that comes. An order is cancelled once, so one row per order."""

    __tablename__ = "order_cancellations"
    __table_args__ = (UniqueConstraint("shop_id", "shopify_order_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    shopify_order_id: Mapped[int] = mapped_column(BigInteger)
    cancelled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OrderRefund(Base):
    """A refund of an order (``refunds/create``, or one listed by ``orders/cancelled``), once per refund
    id: a duplicate or replayed delivery counts once. Kept by the Shopify order id, like cancellations,
    so a refund that arrives before ``orders/paid`` is not lost. ``amount`` is what its successful
    refund transactions paid back."""

    __tablename__ = "order_refunds"
    __table_args__ = (
        UniqueConstraint("shop_id", "refund_id"),
        Index("ix_order_refunds_shop_order", "shop_id", "shopify_order_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    refund_id: Mapped[int] = mapped_column(BigInteger)
    shopify_order_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    refunded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RedemptionAnomaly(Base):
    """A code of ours on a second paid order. Shopify's usage limit should make it impossible; when
    it happens anyway the first redemption stands and this row says what else was seen."""

    __tablename__ = "redemption_anomalies"
    __table_args__ = (UniqueConstraint("shop_id", "code_id", "shopify_order_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    code_id: Mapped[int] = mapped_column(ForeignKey("issued_codes.id", ondelete="CASCADE"), index=True)
    shopify_order_id: Mapped[int] = mapped_column(BigInteger)
    order_name: Mapped[str] = mapped_column(String(64))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReconcileCursor(Base):
    """How far catch-up reconciliation has read a shop's orders (see ``app.codes.catch_up``).

    ``updated_since``: every order updated before it has been read. A walk in progress reads the
    orders updated since ``walk_since`` page by page; ``walk_after`` is the page cursor it resumes
    from, saved in the same transaction as the page's orders, so a crash mid-page redoes that page only.
    """

    __tablename__ = "reconcile_cursors"
    __table_args__ = (CheckConstraint("interval_minutes BETWEEN 1 AND 1440", name="interval"),)

    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)
    updated_since: Mapped[datetime] = mapped_column(UTCDateTime)
    interval_minutes: Mapped[int] = mapped_column(Integer, default=15)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    walk_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    walk_after: Mapped[str | None] = mapped_column(String(2000))
    walk_newest: Mapped[datetime | None] = mapped_column(UTCDateTime)  # latest updatedAt read in this walk
    walk_pages: Mapped[int] = mapped_column(Integer, default=0)
    walk_orders: Mapped[int] = mapped_column(Integer, default=0)
    walk_recovered: Mapped[int] = mapped_column(Integer, default=0)  # orders first recorded by this walk
    walk_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_orders: Mapped[int] = mapped_column(Integer, default=0)  # orders read by the last whole walk
    last_recovered: Mapped[int] = mapped_column(Integer, default=0)  # of them, first recorded by catch-up
    last_error: Mapped[str | None] = mapped_column(Text)
    # The last few whole walks, newest first (``catch_up.RECENT_RUNS`` at most; None before the first):
    # a scheduled run that recovered an order stays visible after a later run that found nothing.
    recent_runs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class WebhookEvent(Base):
    """The webhook inbox: one row per Shopify event, whatever happens to Redis afterwards.

    ``event_id`` is ``X-Shopify-Event-Id`` (or ``X-Shopify-Webhook-Id`` when absent) and is the
    de-duplication key and the rq job id. ``payload`` is the raw body as signed, kept until the event
    is handled and cleared by redaction; it is never re-serialised.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint(_in("status", EVENT_STATUSES), name="status"),
        Index("ix_webhook_events_status_received", "status", "received_at"),
        Index("ix_webhook_events_shop_topic", "shop_domain", "topic"),
        # The health page counts a shop's deliveries of the last day by topic and status.
        Index("ix_webhook_events_shop_received", "shop_domain", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    webhook_id: Mapped[str | None] = mapped_column(String(255))
    shop_domain: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(100))
    api_version: Mapped[str | None] = mapped_column(String(20))
    triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[str | None] = mapped_column(Text)


class DataRequest(Base):
    """A ``customers/data_request``: the data we hold on one customer, kept for the merchant to fetch."""

    __tablename__ = "data_requests"
    __table_args__ = (UniqueConstraint("shop_id", "shopify_request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    shopify_request_id: Mapped[int] = mapped_column(BigInteger)
    shopify_customer_id: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
