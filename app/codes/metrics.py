"""What the codes earned: per shop and per program, over a date range and day by day.

Definitions (the README repeats them for merchants):

- **codes issued**: codes reserved for a customer in the range, except those that failed to reach
  the store (revoked codes count: they were issued, then withdrawn).
- **codes redeemed**: codes whose order was paid in the range.
- **redemption rate**: of the codes issued in the range, the share redeemed by now.
- **median time to redemption**: over the codes redeemed in the range, issue to payment.
- **revenue** and **orders with codes**: the paid orders in the range that used at least one of our
  codes (an order with two codes counts once); **discount given**: what our codes took off them.
- **average order value** with and without our codes: over every paid order seen in the range.
- **codes on the store** (``store``, not limited to the range): our codes whose discount was created
  on the store and not removed by the clean-up since, against Shopify's cap on a store's codes, with a
  warning from ``CAP_WARNING_SHARE`` of it.

The referral loop (``referrals``; ``referral_loop``), link to reward:

- **link clicks**: openings of the shop's referral links in the range (``referral_click_hours``; a
  ``HEAD`` look by a link checker is not one); **unique visitors**: of them, browsers that came
  without a usable code of ours and left with a new one (a browser whose code expired counts again).
- **friend codes**: pool codes handed out by a link's landing in the range.
- **friend orders**: paid orders that used a friend code, by the order's time, whatever became of
  their reward; **conversion**: friend orders / friend codes of the same range (None without codes).
- **referred revenue**: the totals of those orders, per currency, *all* of them (blocked and voided
  ones included: the order was paid, and a refund's amount is not known per referral here);
  **rewarded revenue**: only those whose advocate was rewarded.
- **rewards** of those friend orders, as they stand now: ``pending`` (held until the hold ends),
  ``issued``, ``voided`` (cancelled or refunded within the hold, ...) and ``blocked`` (a fraud control),
  with the counts per reason. Like the redemption rate, a recent order's reward is still pending;
  the reward codes issued in the range, by the day they were issued, are the referral reward
  program's ``codes_issued``.
- **top advocates**: the ten customers whose links brought the most friend orders in the range (then
  the most revenue, currencies added up for the ranking only): their Shopify customer id, their link
  (the newest that brought an order), friend orders, rewarded ones, revenue. Nothing personal.
- daily: clicks, visitors, friend codes, friend orders and their revenue and issued rewards, each
  day's by the day of the click, the code handed out or the order.

A click hour belongs to the day its hour starts in (in a zone half an hour off UTC, the half hour
either side of midnight goes to one day). A shop has one referral loop (its ``referral_friend`` and
``referral_reward`` programs), so one referral program's report shows the whole loop; the per-program
entries split it: friend codes on the friend program, friend orders and rewards on the reward program.
Another program's report has ``referrals: null``.

Money is in the shop's currency, per currency code: a shop that changed its currency sees both.
Days are the store's own, in its time zone (``Shop.iana_timezone``; UTC until catch-up has read it).

On PostgreSQL the figures come from the days' tallies (``app.codes.tallies``): a few rows per day,
whatever the shop's size. Where there are none (SQLite; a shop whose tallies are being rebuilt for a
new time zone) every query reads one shop's rows in the range through an index that starts with the
shop and the date (``ix_issued_codes_shop_issued``, ``ix_issued_codes_shop_redeemed``,
``ix_paid_orders_shop_paid``, ``ix_referral_click_hours_shop``, ``ix_pool_codes_shop_handed_out``,
``ix_referrals_shop_ordered``) and groups by day and program in the database: the cost follows the
rows in the range, never the shop's whole history. The top advocates are always read from the
range's referrals (``ix_referrals_shop_ordered``), their ids and revenue then for those ten only; the
medians from the range's redeemed codes.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, namedtuple
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from operator import add
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, Date, case, cast, func, select, text, tuple_, union_all
from sqlalchemy.orm import Session

from app.errors import BadRequest
from app.models import (
    TALLY_FIGURES,
    CodeTally,
    CodeTallyChange,
    Customer,
    IssuedCode,
    PaidOrder,
    PoolCode,
    Program,
    RedemptionAnomaly,
    Referral,
    ReferralClickHour,
    Shop,
)
from app.params import parse_date

MAX_DAYS = 366
# Shopify caps the discount codes one store can hold. Its developer documentation publishes no figure
# (shopify.dev/docs/api/usage/limits has the 250-item inputs and 25,000-object pages, nothing per
# store); apps that create codes in bulk report 20,000,000: "you've reached the Shopify imposed limit
# of 20,000,000 codes in your store" (Bulk Bunny's help centre, "Why did some of the codes fail?",
# help.bulkbunny.app/en/articles/6834011). The store's own and other apps' discounts count against it
# too; we can only count ours.
STORE_CODE_CAP = 20_000_000
CAP_WARNING_SHARE = 0.8  # warn when our codes alone fill this share of the cap
WORK_MEM = "32MB"
CENT = Decimal("0.01")
REFERRAL_KINDS = ("referral_friend", "referral_reward")
TOP_ADVOCATES = 10
REWARDS = {"held": "pending", "rewarded": "issued", "voided": "voided", "blocked": "blocked"}


def zone_or_none(name: str) -> ZoneInfo | None:
    """The IANA time zone of that name, or None when this machine does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def time_zone_of(shop: Shop) -> str:
    """The store's time zone for its metrics: Shopify's, once catch-up has read it; UTC until then."""
    return shop.iana_timezone if shop.iana_timezone and zone_or_none(shop.iana_timezone) else "UTC"


@dataclass(frozen=True)
class Period:
    """Whole days of the store's time zone (``zone``) from ``first`` to ``last``, both included."""

    first: date
    last: date
    zone: str = "UTC"

    @classmethod
    def parse(cls, first: str | date | None, last: str | date | None, today: date | None = None,
              zone: str = "UTC") -> Period:
        """From ``YYYY-MM-DD`` texts (``app.params.parse_date``: 2000 to 2100); the last 30 days (today
        included) when neither is given."""
        today = today or datetime.now(ZoneInfo(zone)).date()
        end = _given_day(last, "to") if last else today
        start = _given_day(first, "from") if first else end - timedelta(days=29)
        if start > end:
            raise BadRequest(f"from ({start.isoformat()}) must not be after to ({end.isoformat()})")
        if (end - start).days + 1 > MAX_DAYS:
            raise BadRequest(f"a range covers at most {MAX_DAYS} days; {start} to {end} is "
                             f"{(end - start).days + 1}")
        return cls(start, end, zone)

    @classmethod
    def of_shop(cls, shop: Shop, first: str | date | None, last: str | date | None) -> Period:
        return cls.parse(first, last, zone=time_zone_of(shop))

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), ZoneInfo(self.zone)).astimezone(UTC)

    @property
    def end(self) -> datetime:  # exclusive
        return datetime.combine(self.last + timedelta(days=1), time(0), ZoneInfo(self.zone)).astimezone(UTC)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def _given_day(value: str | date, name: str) -> date:
    return value if isinstance(value, date) else parse_date(value, name)


class Tally:
    """The figures of one group (a day, a program, the whole range) before they become JSON."""

    def __init__(self) -> None:
        self.issued = 0
        self.redeemed_of_issued = 0
        self.redeemed = 0
        self.unknown_discount = 0
        self.orders: dict[str, int] = defaultdict(int)  # per currency
        self.revenue: dict[str, Decimal] = defaultdict(Decimal)
        self.discount: dict[str, Decimal] = defaultdict(Decimal)
        self.durations: list[float] = []

    def json(self, median: float | None = None) -> dict[str, Any]:
        return {
            "codes_issued": self.issued,
            "codes_redeemed": self.redeemed,
            "redemption_rate": _ratio(self.redeemed_of_issued, self.issued),
            "redeemed_of_issued": self.redeemed_of_issued,
            "median_seconds_to_redemption": median,
            "orders_with_codes": sum(self.orders.values()),
            "revenue": _money(self.revenue),
            "discount_given": _money(self.discount),
            "codes_with_unknown_discount": self.unknown_discount,
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _money(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {currency: str(amount.quantize(CENT)) for currency, amount in sorted(amounts.items())}


def _average(totals: dict[str, Decimal], counts: dict[str, int]) -> dict[str, str]:
    return {currency: str((totals[currency] / counts[currency]).quantize(CENT))
            for currency in sorted(counts) if counts[currency]}


def _day(column: Any, dialect: str, zone: str) -> ColumnElement[Any]:
    """The calendar day in ``zone`` of a timestamp column, as the database can group by it."""
    if dialect == "postgresql":
        return cast(func.timezone(zone, column), Date)
    return func.oncecode_local_date(column, zone)  # SQLite has no time zones: see app.db


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _seconds(dialect: str) -> ColumnElement[float]:
    """Seconds from issue to redemption, never below zero.

    Shopify gives the time paid in whole seconds while the issue time has microseconds, so a code
    used within the second it was issued would come out a fraction of a second "before" its issue.
    """
    if dialect == "postgresql":
        return func.greatest(0.0, func.extract("epoch", IssuedCode.redeemed_at - IssuedCode.issued_at))
    # SQLite's max() with two arguments is the scalar maximum, like greatest().
    return func.max(0.0, (func.julianday(IssuedCode.redeemed_at) - func.julianday(IssuedCode.issued_at)) * 86400.0)


@dataclass
class Groups:
    """The figures ``shop_metrics`` sums, grouped by day and program, from the codes or their tallies."""

    issued: list[tuple[Any, int, int, int]]  # day, program, issued, of them redeemed by now
    redeemed: list[tuple[Any, int, str | None, int, int, Any]]  # day, program, currency, redeemed, known, discount
    program_orders: list[tuple[Any, int, str | None, int, Any]]  # day, program, currency, orders, revenue
    paid: list[tuple[Any, bool, str, int, Any]]  # day, with our codes, currency, orders, revenue
    # Friend codes redeemed: day, program, currency, orders, known discounts, discount, revenue.
    friend: list[tuple[Any, int, str, int, int, Any, Any]]
    # The referral loop (the whole shop's, whatever the program asked for).
    clicks: list[tuple[Any, int, int]]  # day, clicks, new visitors
    friend_codes: list[tuple[Any, int, int]]  # day, program, friend codes handed out
    # Referred orders: day, program, currency, reason, orders, revenue, rewarded revenue, then the orders
    # whose reward is pending, issued, voided, blocked.
    referrals: list[tuple[Any, int | None, str, str | None, int, Any, Any, int, int, int, int]]


def shop_metrics(session: Session, shop_id: int, period: Period, program_id: int | None = None,
                 daily: bool = True, cache: Redis | None = None, medians: bool = True) -> dict[str, Any]:
    """The shop's metrics over ``period`` (optionally one program's), with a per-program breakdown
    and, when ``daily``, one entry per day of the range. ``cache``: see ``store_usage``. ``medians``:
    False leaves out the median time to redemption (None), the one figure read from every redeemed
    code of the range rather than from the days' tallies (the admin's dashboard does not show it)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # A year of a large shop's codes sorts more than the default 4 MB in memory (the daily and
        # median aggregates): give this transaction room rather than spill to disk.
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    programs = {p.id: p for p in session.scalars(select(Program).where(Program.shop_id == shop_id))}
    if program_id is not None and program_id not in programs:
        raise BadRequest(f"this store has no program {program_id}")
    days: dict[date, Tally] = defaultdict(Tally)
    by_program: dict[int, Tally] = defaultdict(Tally)
    total = Tally()

    def groups(day: Any, program: int) -> Iterable[Tally]:
        return (days[_as_date(day)], by_program[program], total)

    of_program = [IssuedCode.program_id == program_id] if program_id is not None else []
    found = (_groups_from_tallies(session, dialect, shop_id, period, program_id)
             or _groups_from_codes(session, dialect, shop_id, period, program_id))

    for day, program, issued, redeemed in found.issued:
        for tally in groups(day, program):
            tally.issued += issued
            tally.redeemed_of_issued += redeemed

    for day, program, currency, redeemed, known, discount in found.redeemed:
        for tally in groups(day, program):
            tally.redeemed += redeemed
            tally.unknown_discount += redeemed - known
            if discount is not None:
                tally.discount[currency] += Decimal(discount)

    # Friend codes (from the pools) redeemed in the range: each is a referral, one per order, with what the
    # code took off it; their discount and their orders count for the friend program like our other codes'
    # (the shop's revenue with codes already has their orders: they count in ``paid_orders.our_codes``).
    for day, program, currency, orders, known, discount, revenue in found.friend:
        for tally in groups(day, program):
            tally.unknown_discount += orders - known
            if discount is not None:
                tally.discount[currency] += Decimal(discount)
        for tally in (days[_as_date(day)], by_program[program]) if program_id is not None else (by_program[program],):
            tally.orders[currency] += orders
            tally.revenue[currency] += Decimal(revenue or 0)

    # Revenue per program: each (program, order) once, with the order total kept on the code.
    for day, program, currency, orders, revenue in found.program_orders:
        # One program's days come from its codes; the whole shop's from its orders (below).
        for tally in (days[_as_date(day)], by_program[program]) if program_id is not None else (by_program[program],):
            tally.orders[currency] += orders
            tally.revenue[currency] += Decimal(revenue or 0)

    # The whole shop's orders: revenue without double counting an order that used several programs'
    # codes, and the orders without our codes for the average order value.
    sums: dict[bool, dict[str, Decimal]] = {True: defaultdict(Decimal), False: defaultdict(Decimal)}
    counts: dict[bool, dict[str, int]] = {True: defaultdict(int), False: defaultdict(int)}
    for day, has_codes, currency, orders, revenue in found.paid:
        sums[bool(has_codes)][currency] += Decimal(revenue or 0)
        counts[bool(has_codes)][currency] += orders
        if program_id is None and has_codes:
            for tally in (days[_as_date(day)], total):
                tally.orders[currency] += orders
                tally.revenue[currency] += Decimal(revenue or 0)
    if program_id is not None:  # the program's own orders (and their average) come from its codes
        total.orders, total.revenue = by_program[program_id].orders, by_program[program_id].revenue
        sums[True], counts[True] = total.revenue, total.orders

    in_range = _redeemed_in(shop_id, period, of_program)
    medians_found = _medians(session, dialect, in_range) if medians else {}
    anomalies = session.scalar(select(func.count()).select_from(RedemptionAnomaly).where(
        RedemptionAnomaly.shop_id == shop_id, RedemptionAnomaly.detected_at >= period.start,
        RedemptionAnomaly.detected_at < period.end)) or 0

    result: dict[str, Any] = {
        "from": period.first.isoformat(), "to": period.last.isoformat(), "time_zone": period.zone,
        "program_id": program_id, "currency": shop_currency(session, shop_id),
        "totals": {**total.json(medians_found.get(None)),
                   "average_order_value": {"with_codes": _average(sums[True], counts[True]),
                                           "without_codes": _average(sums[False], counts[False])},
                   "orders_without_codes": sum(counts[False].values()),
                   "anomalies": anomalies},
        "programs": [{"program_id": pid, "name": programs[pid].name, "kind": programs[pid].kind,
                      **by_program[pid].json(medians_found.get(pid))}
                     for pid in sorted(programs) if program_id is None or pid == program_id],
    }
    result["store"] = store_usage(session, shop_id, cache)
    loop = None
    if program_id is None or programs[program_id].kind in REFERRAL_KINDS:
        loop = referral_loop(session, shop_id, period, found)
        for entry in result["programs"]:
            if entry["kind"] in REFERRAL_KINDS:
                entry["referrals"] = loop.program_json(entry["program_id"], entry["kind"])
    result["referrals"] = loop.json() if loop else None
    if daily:
        result["daily"] = [{"date": day.isoformat(), **_daily(days[day]),
                            **({"referrals": loop.days[day].daily_json()} if loop else {})}
                           for day in period.days()]
    return result


def _redeemed_in(shop_id: int, period: Period, of_program: list[ColumnElement[bool]]) -> tuple[Any, ...]:
    """The shop's codes redeemed in the range (``ix_issued_codes_shop_redeemed``)."""
    return (IssuedCode.shop_id == shop_id, IssuedCode.redeemed_at.is_not(None),
            IssuedCode.redeemed_at >= period.start, IssuedCode.redeemed_at < period.end, *of_program)


def _groups_from_codes(session: Session, dialect: str, shop_id: int, period: Period,
                       program_id: int | None) -> Groups:
    """The figures read from the rows of the range: each query through an index that starts with the
    shop and the time, so the cost follows the rows in the range (about a second for a year of a
    million codes)."""
    of_program = [IssuedCode.program_id == program_id] if program_id is not None else []
    issued_day = _day(IssuedCode.issued_at, dialect, period.zone)
    issued = session.execute(
        select(issued_day, IssuedCode.program_id, func.count(), func.count(IssuedCode.redeemed_at))
        .where(IssuedCode.shop_id == shop_id, IssuedCode.issued_at >= period.start,
               IssuedCode.issued_at < period.end, IssuedCode.status != "failed", *of_program)
        .group_by(issued_day, IssuedCode.program_id)).all()
    redeemed_day = _day(IssuedCode.redeemed_at, dialect, period.zone)
    in_range = _redeemed_in(shop_id, period, of_program)
    redeemed = session.execute(
        select(redeemed_day, IssuedCode.program_id, IssuedCode.currency, func.count(),
               func.count(IssuedCode.discount_amount), func.sum(IssuedCode.discount_amount))
        .where(*in_range).group_by(redeemed_day, IssuedCode.program_id, IssuedCode.currency)).all()
    # Each (program, order) once, with the order total kept on the code.
    used = (select(IssuedCode.program_id, IssuedCode.order_id, IssuedCode.currency, IssuedCode.order_total,
                   redeemed_day.label("day")).where(*in_range).distinct().subquery())
    program_orders = session.execute(
        select(used.c.day, used.c.program_id, used.c.currency, func.count(), func.sum(used.c.order_total))
        .group_by(used.c.day, used.c.program_id, used.c.currency)).all()
    paid_day = _day(PaidOrder.paid_at, dialect, period.zone)
    with_codes = case((PaidOrder.our_codes > 0, True), else_=False)
    paid = session.execute(
        select(paid_day, with_codes, PaidOrder.currency, func.count(), func.sum(PaidOrder.total_price))
        .where(PaidOrder.shop_id == shop_id, PaidOrder.paid_at >= period.start, PaidOrder.paid_at < period.end)
        .group_by(paid_day, with_codes, PaidOrder.currency)).all()
    # Friend codes (from the pools) redeemed in the range: a referral each, one per order.
    ordered_day = _day(Referral.ordered_at, dialect, period.zone)
    of_friend = [PoolCode.program_id == program_id] if program_id is not None else []
    friend = session.execute(
        select(ordered_day, PoolCode.program_id, Referral.currency, func.count(),
               func.count(Referral.discount_amount), func.sum(Referral.discount_amount), func.sum(Referral.order_total))
        .join(PoolCode, PoolCode.id == Referral.pool_code_id)
        .where(*_referrals_in(shop_id, period), PoolCode.shop_id == shop_id, *of_friend)
        .group_by(ordered_day, PoolCode.program_id, Referral.currency)).all()
    # The referral loop: clicks by the day their hour starts in, friend codes handed out by a link's
    # landing, referred orders by status.
    hour_day = _day(ReferralClickHour.hour, dialect, period.zone)
    clicks = session.execute(
        select(hour_day, func.sum(ReferralClickHour.clicks), func.sum(ReferralClickHour.visitors))
        .where(ReferralClickHour.shop_id == shop_id, ReferralClickHour.hour >= period.start,
               ReferralClickHour.hour < period.end)
        .group_by(hour_day)).all()
    handed_day = _day(PoolCode.handed_out_at, dialect, period.zone)
    friend_codes = session.execute(
        select(handed_day, PoolCode.program_id, func.count()).select_from(PoolCode)
        .where(PoolCode.shop_id == shop_id, PoolCode.link_id.is_not(None),
               PoolCode.handed_out_at >= period.start, PoolCode.handed_out_at < period.end)
        .group_by(handed_day, PoolCode.program_id)).all()

    def with_status(status: str) -> ColumnElement[int]:
        return func.count(case((Referral.status == status, 1)))

    referred = session.execute(
        select(ordered_day, Referral.program_id, Referral.currency, Referral.reason, func.count(),
               func.sum(Referral.order_total),
               func.sum(case((Referral.status == "rewarded", Referral.order_total), else_=0)),
               *(with_status(status) for status in REWARDS))
        .where(*_referrals_in(shop_id, period))
        .group_by(ordered_day, Referral.program_id, Referral.currency, Referral.reason)).all()
    return Groups(issued, redeemed, program_orders, paid, friend, clicks, friend_codes, referred)  # type: ignore[arg-type]


def _groups_from_tallies(session: Session, dialect: str, shop_id: int, period: Period,
                         program_id: int | None) -> Groups | None:
    """The same figures from the days' tallies and the changes not folded into them yet
    (``app.codes.tallies``): a few rows per day whatever the shop's size. None where there are none to
    read (SQLite) or they are not in the range's time zone (being rebuilt): the caller reads the codes."""
    if dialect != "postgresql":
        return None
    if session.scalar(select(Shop.tally_zone).where(Shop.id == shop_id)) != period.zone:
        return None
    # One statement, so one snapshot: a fold that moves changes into the days meanwhile is seen
    # entirely or not at all. The days' rows are unique per key and come as they are; the few changes
    # not folded yet are summed per day here and added to them below.
    change_day = cast(func.timezone(period.zone, CodeTallyChange.at), Date)
    changes_key = (change_day, CodeTallyChange.program_id, CodeTallyChange.currency, CodeTallyChange.detail)
    rows = session.execute(union_all(
        select(CodeTally.day, CodeTally.program_id, CodeTally.currency, CodeTally.detail,
               *(getattr(CodeTally, name) for name in TALLY_FIGURES))
        .where(CodeTally.shop_id == shop_id, CodeTally.day >= period.first, CodeTally.day <= period.last),
        select(*changes_key, *(func.sum(getattr(CodeTallyChange, name)) for name in TALLY_FIGURES))
        .where(CodeTallyChange.shop_id == shop_id, CodeTallyChange.at >= period.start,
               CodeTallyChange.at < period.end)
        .group_by(*changes_key))).all()
    figures: dict[tuple[Any, ...], TallyRow] = {}
    for row in rows:
        key, values = tuple(row[:4]), TallyRow._make(row[4:])
        figures[key] = values if key not in figures else TallyRow._make(map(add, figures[key], values))
    found = Groups([], [], [], [], [], [], [], [])
    for (day, program, currency, detail), values in figures.items():
        _split(found, day, program, currency, detail, values, program_id)
    return found


TallyRow = namedtuple("TallyRow", TALLY_FIGURES)  # type: ignore[misc]  # noqa: PYI024 -- the columns' names, as listed


def _split(found: Groups, day: date, program: int, currency: str, detail: str, figures: TallyRow,
           program_id: int | None) -> None:
    """One tally row's figures into the groups the codes' queries give (``Groups``), leaving out what
    adds up to nothing, as those queries have no row for it. ``program_id``: the program asked for,
    whose codes only count (the referral loop is the shop's whole)."""
    if figures.link_clicks or figures.unique_visitors:
        found.clicks.append((day, figures.link_clicks, figures.unique_visitors))
    if figures.friend_codes:
        found.friend_codes.append((day, program, figures.friend_codes))
    if figures.friend_orders:
        found.referrals.append((day, program or None, currency, detail or None, figures.friend_orders,
                                figures.referred_revenue, figures.rewarded_revenue, figures.rewards_pending,
                                figures.rewards_issued, figures.rewards_voided, figures.rewards_blocked))
    if program == 0:  # the shop's paid orders
        if figures.orders:
            found.paid.append((day, True, currency, figures.orders, figures.revenue))
        if figures.orders_without_codes:
            found.paid.append((day, False, currency, figures.orders_without_codes, figures.revenue_without_codes))
        return
    if program_id is not None and program != program_id:
        return
    if figures.codes_issued or figures.redeemed_of_issued:
        found.issued.append((day, program, figures.codes_issued, figures.redeemed_of_issued))
    if figures.codes_redeemed:
        found.redeemed.append((day, program, currency or None, figures.codes_redeemed, figures.discounts_known,
                               figures.discount if figures.discounts_known else None))
    if figures.orders:
        found.program_orders.append((day, program, currency or None, figures.orders, figures.revenue))
    if figures.friend_code_orders:
        found.friend.append((day, program, currency, figures.friend_code_orders, figures.friend_discounts_known,
                             figures.friend_discount if figures.friend_discounts_known else None,
                             figures.friend_code_revenue))


def on_store() -> ColumnElement[bool]:
    """Our codes whose discount is on the store: created there and not removed by the clean-up."""
    return (IssuedCode.discount_gid.is_not(None)) & (IssuedCode.removed_from_store_at.is_(None))


def codes_on_store(session: Session, shop_ids: Iterable[int]) -> dict[int, int]:
    """How many of each shop's codes are on its store (shops without any are left out).

    Reads the partial index ``ix_issued_codes_shop_on_store``: the codes already removed cost nothing.
    """
    wanted = list(shop_ids)
    if not wanted:
        return {}
    return dict(session.execute(select(IssuedCode.shop_id, func.count()).where(
        IssuedCode.shop_id.in_(wanted), on_store()).group_by(IssuedCode.shop_id)).all())


STORE_USAGE_SECONDS = 60  # how old a cached count of the codes on the store may be (``store_usage``)


def store_usage(session: Session, shop_id: int, cache: Redis | None = None) -> dict[str, Any]:
    """Our codes on the shop's store against Shopify's cap, and a warning when they near it.

    The count reads every live code (110–200 ms at a million), whatever the range: pages that show it
    on every load (the admin's home and health) pass ``cache``, and get a count at most
    ``STORE_USAGE_SECONDS`` old; the API and the CLI count afresh. Redis unreachable: counted afresh.
    """
    key = f"oncecode:store-usage:{shop_id}"
    live = None
    if cache is not None:
        try:
            cached = cache.get(key)
            live = int(cached) if cached is not None else None
        except (RedisError, ValueError):
            live = None
    if live is None:
        live = codes_on_store(session, [shop_id]).get(shop_id, 0)
        if cache is not None:
            with suppress(RedisError):
                cache.set(key, live, ex=STORE_USAGE_SECONDS)
    return {"codes_on_store": live, "cap": STORE_CODE_CAP, "share_of_cap": round(live / STORE_CODE_CAP, 4),
            "warning": cap_warning(live)}


def cap_warning(live: int) -> str | None:
    """What to tell the merchant when our codes on the store reach ``CAP_WARNING_SHARE`` of the cap."""
    share = live / STORE_CODE_CAP
    if share < CAP_WARNING_SHARE:
        return None
    return (f"{live:,} OnceCode codes are on the store, {share * 100:.1f} % of the {STORE_CODE_CAP:,} codes Shopify "
            "lets a store hold (its other discounts count too): new codes are refused once it is full. "
            "Shorter expiries let unused codes leave the store sooner.")


def shop_currency(session: Session, shop_id: int) -> str | None:
    """The store's currency as its latest paid order gives it (None before the first order): what a
    zero amount is shown in, where the range itself has no money to name one."""
    return session.scalar(select(PaidOrder.currency).where(PaidOrder.shop_id == shop_id)
                          .order_by(PaidOrder.paid_at.desc()).limit(1))


def _daily(tally: Tally) -> dict[str, Any]:
    figures = tally.json()
    figures.pop("median_seconds_to_redemption")
    return figures


def _medians(session: Session, dialect: str, in_range: tuple[Any, ...]) -> dict[int | None, float]:
    """Median seconds from issue to redemption, overall (key None) and per program, in one pass."""
    seconds = _seconds(dialect)
    if dialect == "postgresql":
        # GROUPING SETS: the per-program medians and the overall one from a single read of the rows.
        overall = func.grouping(IssuedCode.program_id)
        return {None if whole else program: round(float(value), 1) for program, whole, value in session.execute(
            select(IssuedCode.program_id, overall, func.percentile_cont(0.5).within_group(seconds))
            .where(*in_range)
            .group_by(func.grouping_sets(tuple_(IssuedCode.program_id), tuple_())))
            if value is not None}
    values: dict[int | None, list[float]] = defaultdict(list)
    for program, value in session.execute(select(IssuedCode.program_id, seconds).where(*in_range)):
        values[program].append(float(value))
        values[None].append(float(value))
    return {key: round(statistics.median(found), 1) for key, found in values.items()}


# --- the referral loop ------------------------------------------------------------------------------


class Funnel:
    """The referral figures of one group (a day, a program, the whole range) before they become JSON."""

    def __init__(self) -> None:
        self.clicks = 0
        self.visitors = 0
        self.friend_codes = 0
        self.friend_orders = 0
        self.revenue: dict[str, Decimal] = defaultdict(Decimal)  # per currency
        self.rewarded_revenue: dict[str, Decimal] = defaultdict(Decimal)
        self.rewards = dict.fromkeys(REWARDS.values(), 0)
        self.reasons: dict[str, dict[str, int]] = {"voided": defaultdict(int), "blocked": defaultdict(int)}

    def add_orders(self, reason: str | None, currency: str, orders: int, revenue: Decimal, rewarded: Decimal,
                   by_status: dict[str, int]) -> None:
        """Referred orders of one currency and reason: how many, their revenue, the revenue of those
        rewarded, and how many there are of each status (``REWARDS``' keys)."""
        self.friend_orders += orders
        self.revenue[currency] += revenue
        for status, count in by_status.items():
            self.rewards[REWARDS[status]] += count
            if status in self.reasons and reason and count:
                self.reasons[status][reason] += count
        if by_status["rewarded"]:
            self.rewarded_revenue[currency] += rewarded

    def orders_json(self) -> dict[str, Any]:
        return {"friend_orders": self.friend_orders, "referred_revenue": _money(self.revenue),
                "rewarded_revenue": _money(self.rewarded_revenue), "rewards": dict(self.rewards),
                "voided_reasons": dict(sorted(self.reasons["voided"].items())),
                "blocked_reasons": dict(sorted(self.reasons["blocked"].items()))}

    def daily_json(self) -> dict[str, Any]:
        return {"link_clicks": self.clicks, "unique_visitors": self.visitors, "friend_codes": self.friend_codes,
                "friend_orders": self.friend_orders, "referred_revenue": _money(self.revenue),
                "rewards_issued": self.rewards["issued"]}


class ReferralLoop:
    """A shop's referral figures over a period: in all, per program and per day (``referral_loop``)."""

    def __init__(self) -> None:
        self.total = Funnel()
        self.days: dict[date, Funnel] = defaultdict(Funnel)
        self.programs: dict[int | None, Funnel] = defaultdict(Funnel)
        self.top_advocates: list[dict[str, Any]] = []

    def json(self) -> dict[str, Any]:
        total = self.total
        return {"link_clicks": total.clicks, "unique_visitors": total.visitors, "friend_codes": total.friend_codes,
                **total.orders_json(), "conversion": _ratio(total.friend_orders, total.friend_codes),
                "top_advocates": self.top_advocates}

    def program_json(self, program_id: int, kind: str) -> dict[str, Any]:
        """A referral program's share of the loop: the friend codes it handed out (``referral_friend``),
        or the friend orders recorded for it and their rewards (``referral_reward``)."""
        funnel = self.programs[program_id]
        return {"friend_codes": funnel.friend_codes} if kind == "referral_friend" else funnel.orders_json()


def referral_loop(session: Session, shop_id: int, period: Period, found: Groups) -> ReferralLoop:
    """The shop's referral loop over ``period`` (see the module's docstring for each figure), from the
    groups read for the report; the top advocates from the referrals of the range."""
    loop = ReferralLoop()
    for day, clicks, visitors in found.clicks:
        for funnel in (loop.days[_as_date(day)], loop.total):
            funnel.clicks += int(clicks or 0)
            funnel.visitors += int(visitors or 0)
    for day, program, codes in found.friend_codes:
        for funnel in (loop.days[_as_date(day)], loop.programs[program], loop.total):
            funnel.friend_codes += codes
    for day, program, currency, reason, orders, revenue, rewarded, *counts in found.referrals:
        by_status = dict(zip(REWARDS, counts, strict=True))
        for funnel in (loop.days[_as_date(day)], loop.programs[program], loop.total):
            funnel.add_orders(reason, currency, orders, Decimal(revenue or 0), Decimal(rewarded or 0), by_status)
    if loop.total.friend_orders:
        loop.top_advocates = _top_advocates(session, shop_id, _referrals_in(shop_id, period))
    return loop


def _referrals_in(shop_id: int, period: Period) -> tuple[ColumnElement[bool], ...]:
    """The shop's referrals whose order was paid in the range (``ix_referrals_shop_ordered``)."""
    return (Referral.shop_id == shop_id, Referral.ordered_at >= period.start, Referral.ordered_at < period.end)


def _top_advocates(session: Session, shop_id: int, in_range: tuple[ColumnElement[bool], ...]) -> list[dict[str, Any]]:
    """Up to ``TOP_ADVOCATES`` advocates by friend orders in the range, then revenue, then who came first;
    their Shopify ids and revenue per currency are then read for those few only."""
    orders = func.count()
    rewarded = func.count(case((Referral.status == "rewarded", 1)))
    top = session.execute(
        select(Referral.advocate_id, orders, rewarded, func.max(Referral.link_id))
        .where(*in_range, Referral.advocate_id.is_not(None))
        .group_by(Referral.advocate_id)
        .order_by(orders.desc(), func.sum(Referral.order_total).desc(), Referral.advocate_id)
        .limit(TOP_ADVOCATES)).all()
    if not top:
        return []
    ids = [row[0] for row in top]
    shopify_ids = dict(session.execute(select(Customer.id, Customer.shopify_customer_id).where(
        Customer.shop_id == shop_id, Customer.id.in_(ids))).all())
    revenue: dict[int, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for advocate, currency, amount in session.execute(
            select(Referral.advocate_id, Referral.currency, func.sum(Referral.order_total))
            .where(*in_range, Referral.advocate_id.in_(ids))
            .group_by(Referral.advocate_id, Referral.currency)):
        revenue[advocate][currency] += Decimal(amount or 0)
    return [{"customer_id": shopify_ids.get(advocate), "link_id": link_id, "friend_orders": count,
             "rewarded": rewarded_count, "revenue": _money(revenue[advocate])}
            for advocate, count, rewarded_count, link_id in top]
