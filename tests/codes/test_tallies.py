"""The metrics' daily tallies (``app.codes.tallies``) say exactly what the codes say, whatever happened.

Each test writes codes and orders through the app's own paths (reconciliation, the status updates of
issuance, revocation, erasure), folds at moments of its choosing, and then compares the metrics read
from the tallies with the metrics read from the codes themselves (the shop's ``tally_zone`` cleared for
the second read: a shop whose tallies are not in its zone is read from its codes).
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from rq import Queue
from rq.cron import CronScheduler
from sqlalchemy import delete, func, select, update

from app.codes import tallies
from app.codes.metrics import Period, shop_metrics
from app.codes.reconciliation import PaidOrderFacts, reconcile
from app.models import CodeTally, CodeTallyChange, IssuedCode, PaidOrder, PoolCode, Referral, ReferralClickHour, Shop
from tests.conftest import run_worker
from tests.helpers import issued_code, make_shop_with_programs, order_payload, program_of
from workers.tallies import fold_tallies

START = datetime(2026, 10, 30, tzinfo=UTC)  # three days either side of New York's DST change (1 November)
KINDS = ("welcome", "referral_friend", "referral_reward")


def tally_zone(db, shop_id: int) -> str | None:  # type: ignore[no-untyped-def]
    db.commit()
    return db.scalar(select(Shop.tally_zone).where(Shop.id == shop_id))


def both_ways(db, shop_id: int, period: Period, program_id: int | None = None) -> tuple[dict, dict]:  # type: ignore[no-untyped-def,type-arg]
    """The metrics from the tallies, then from the codes."""
    zone = tally_zone(db, shop_id)
    assert zone == period.zone, "the tallies must be in the range's zone for this comparison"
    from_tallies = shop_metrics(db, shop_id, period, program_id=program_id)
    db.execute(update(Shop).where(Shop.id == shop_id).values(tally_zone=None))
    db.commit()
    try:
        from_codes = shop_metrics(db, shop_id, period, program_id=program_id)
    finally:
        db.execute(update(Shop).where(Shop.id == shop_id).values(tally_zone=zone))
        db.commit()
    return from_tallies, from_codes


def assert_same(db, shop, zone: str) -> None:  # type: ignore[no-untyped-def]
    for first, last in ((date(2026, 10, 29), date(2026, 11, 6)), (date(2026, 10, 31), date(2026, 11, 1)),
                        (date(2026, 11, 2), date(2026, 11, 2))):
        period = Period(first, last, zone)
        for program_id in (None, program_of(db, shop, "welcome").id, program_of(db, shop, "referral_reward").id):
            from_tallies, from_codes = both_ways(db, shop.id, period, program_id)
            assert from_tallies == from_codes, (first, last, program_id)


class Store:
    """Random but reproducible traffic: codes issued (some failing, some revoked), orders paid with one
    or two of our codes, several programs' codes on one order, codes the order names twice, discounts
    Shopify did not report, orders without our codes, in two currencies."""

    def __init__(self, db, shop, seed: int) -> None:  # type: ignore[no-untyped-def]
        self.db, self.shop, self.rng = db, shop, random.Random(seed)
        self.codes: list[str] = []
        self.unused: list[str] = []
        self.orders = 0

    def moment(self) -> datetime:
        return START + timedelta(minutes=self.rng.randrange(7 * 24 * 60))

    def issue(self) -> None:
        code = f"T{len(self.codes)}"
        status = self.rng.choice(["attached"] * 6 + ["failed", "reserved", "revoked"])
        issued_code(self.db, self.shop, code, kind=self.rng.choice(KINDS), status=status, issued_at=self.moment())
        self.codes.append(code)
        if status == "attached":
            self.unused.append(code)

    def pay(self) -> None:
        self.orders += 1
        used = self.rng.sample(self.unused, min(len(self.unused), self.rng.choice([0, 1, 1, 2])))
        if used and self.rng.random() < 0.2:
            used.append(self.rng.choice(self.codes))  # a code used before (an anomaly) or failed
        paid = self.moment()
        payload = order_payload(
            10_000 + self.orders, [(code, self.rng.choice(["2.50", "5.00"])) for code in used],
            total=str(Decimal(self.rng.randrange(1000, 20000)) / 100), currency=self.rng.choice(["USD", "USD", "EUR"]),
            processed_at=paid.isoformat())
        reconcile(self.db, self.shop.id, PaidOrderFacts.from_webhook(payload), "webhook")
        self.db.commit()
        self.unused = [code for code in self.unused if code not in used]

    def change(self) -> None:
        """What issuance, revocation and catch-up do to a code after the fact."""
        code = self.rng.choice(self.codes)
        values = self.rng.choice([{"status": "failed"}, {"status": "attached"}, {"status": "revoked"},
                                  {"discount_amount": None}, {"discount_amount": Decimal("1.25")},
                                  {"issued_at": self.moment()}])
        self.db.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.code == code)
                        .values(**values))
        self.db.commit()

    def run(self, steps: int, fold_every: int | None, rt) -> None:  # type: ignore[no-untyped-def]
        for step in range(steps):
            self.rng.choice([self.issue, self.issue, self.pay, self.pay, self.change])()
            if fold_every and step % fold_every == 0:
                tallies.fold_changes(rt.db)


@pytest.mark.parametrize(("seed", "zone", "fold_every"), [
    (1, "UTC", None), (2, "America/New_York", 7), (3, "Asia/Kathmandu", 3), (4, "Asia/Kolkata", 1),
])
def test_tallies_say_what_the_codes_say_after_random_traffic(db, rt, seed, zone, fold_every):
    shop = make_shop_with_programs(db, rt.cipher)
    shop.iana_timezone = zone
    db.commit()
    tallies.fold_changes(rt.db)
    assert tally_zone(db, shop.id) == zone
    store = Store(db, shop, seed)
    for _ in range(12):
        store.issue()
    store.run(90, fold_every, rt)
    assert_same(db, shop, zone)  # the last changes not folded yet
    tallies.fold_changes(rt.db)
    assert db.scalar(select(func.count()).select_from(CodeTallyChange)) == 0
    assert_same(db, shop, zone)


def test_an_order_with_two_codes_of_one_program_counts_once_whichever_is_redeemed_first(db, rt):
    shop = make_shop_with_programs(db, rt.cipher)
    tallies.fold_changes(rt.db)
    first = issued_code(db, shop, "ONE", issued_at=START)
    issued_code(db, shop, "TWO", issued_at=START)
    # The higher id redeemed first (catch-up's order of work may differ from the webhook's), then the lower.
    payload = order_payload(7, [("TWO", "1.00")], total="50.00", processed_at="2026-11-01T10:00:00Z")
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(payload), "webhook")
    db.commit()
    db.execute(update(IssuedCode).where(IssuedCode.id == first.id).values(
        status="redeemed", redeemed_at=datetime(2026, 11, 1, 10, tzinfo=UTC), order_id=7, order_total=Decimal("50.00"),
        currency="USD", discount_amount=Decimal("1.00")))
    db.commit()
    period = Period(date(2026, 11, 1), date(2026, 11, 1))
    from_tallies, from_codes = both_ways(db, shop.id, period)
    assert from_tallies == from_codes
    welcome = next(p for p in from_tallies["programs"] if p["kind"] == "welcome")
    assert (welcome["codes_redeemed"], welcome["orders_with_codes"], welcome["revenue"]) == (2, 1, {"USD": "50.00"})


def test_a_new_store_time_zone_is_read_from_the_codes_until_the_fold_rebuilds_the_days(db, rt):
    shop = make_shop_with_programs(db, rt.cipher)
    store = Store(db, shop, 5)
    for _ in range(10):
        store.issue()
    store.run(30, None, rt)
    tallies.fold_changes(rt.db)
    assert tally_zone(db, shop.id) == "UTC"
    # Catch-up reads the store's zone: its days are not the tallies' any more.
    db.execute(update(Shop).where(Shop.id == shop.id).values(iana_timezone="America/New_York"))
    db.commit()
    period = Period.of_shop(db.get(Shop, shop.id), "2026-10-29", "2026-11-06")
    before = shop_metrics(db, shop.id, period)
    assert tally_zone(db, shop.id) == "UTC"  # read from the codes meanwhile
    assert tallies.fold_changes(rt.db)["rebuilt"] == 1
    assert tally_zone(db, shop.id) == "America/New_York"
    assert shop_metrics(db, shop.id, period) == before
    assert_same(db, shop, "America/New_York")
    assert tallies.fold_changes(rt.db)["rebuilt"] == 0  # nothing left to rebuild


def test_writers_folds_and_a_rebuild_at_the_same_time_miss_nothing_and_count_nothing_twice(db, rt):
    shop = make_shop_with_programs(db, rt.cipher)
    tallies.fold_changes(rt.db)
    codes = [issued_code(db, shop, f"C{n}", kind=KINDS[n % 3], issued_at=START + timedelta(hours=n)).code
             for n in range(120)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def pay(part: list[str], first_order: int) -> None:
        try:
            with rt.db.session_scope() as session:
                for n, code in enumerate(part):
                    payload = order_payload(first_order + n, [(code, "3.00")], total="30.00",
                                            processed_at=(START + timedelta(hours=n, minutes=30)).isoformat())
                    reconcile(session, shop.id, PaidOrderFacts.from_webhook(payload), "webhook")
                    session.commit()
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            errors.append(exc)

    def fold() -> None:
        while not stop.is_set():
            try:
                tallies.fold_changes(rt.db)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    writers = [threading.Thread(target=pay, args=(codes[n::4], 1000 * (n + 1))) for n in range(4)]
    folder = threading.Thread(target=fold)
    for thread in (*writers, folder):
        thread.start()
    # Mid-way, the store's zone changes: the next fold rebuilds the shop while the writers go on.
    db.execute(update(Shop).where(Shop.id == shop.id).values(iana_timezone="Asia/Kolkata"))
    db.commit()
    for thread in writers:
        thread.join()
    stop.set()
    folder.join()
    assert not errors
    tallies.fold_changes(rt.db)
    assert tally_zone(db, shop.id) == "Asia/Kolkata"
    assert_same(db, shop, "Asia/Kolkata")
    report = shop_metrics(db, shop.id, Period(date(2026, 10, 29), date(2026, 11, 6), "Asia/Kolkata"))
    assert (report["totals"]["codes_redeemed"], report["totals"]["orders_with_codes"]) == (120, 120)


def test_a_deleted_shop_leaves_no_tallies_and_its_changes_are_dropped(db, rt):
    shop = make_shop_with_programs(db, rt.cipher)
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    tallies.fold_changes(rt.db)
    for owner in (shop, other):
        issued_code(db, owner, f"X{owner.id}", issued_at=START)
    tallies.fold_changes(rt.db)
    issued_code(db, shop, "LATE", issued_at=START)  # a change not folded yet
    db.execute(delete(Shop).where(Shop.id == shop.id))
    db.commit()
    assert db.scalar(select(func.count()).select_from(CodeTally).where(CodeTally.shop_id == shop.id)) == 0
    assert tallies.fold_changes(rt.db)["folded"] > 0
    assert db.scalar(select(func.count()).select_from(CodeTallyChange)) == 0
    assert shop_metrics(db, other.id, Period(date(2026, 10, 30), date(2026, 10, 30)))["totals"]["codes_issued"] == 1


def test_paid_orders_erased_or_deleted_leave_the_days(db, rt):
    shop = make_shop_with_programs(db, rt.cipher)
    tallies.fold_changes(rt.db)
    store = Store(db, shop, 6)
    for _ in range(8):
        store.issue()
    store.run(20, 4, rt)
    db.execute(delete(PaidOrder).where(PaidOrder.shop_id == shop.id, PaidOrder.our_codes == 0))
    db.execute(update(IssuedCode).where(IssuedCode.shop_id == shop.id).values(customer_id=None))
    db.commit()
    assert_same(db, shop, "UTC")
    report = shop_metrics(db, shop.id, Period(date(2026, 10, 29), date(2026, 11, 6)))
    assert report["totals"]["orders_without_codes"] == 0


def test_one_fold_at_a_time(db, rt):
    with rt.db.engine.connect() as other:
        other.exec_driver_sql(f"SELECT pg_advisory_lock({tallies.FOLD_LOCK})")
        assert tallies.fold_changes(rt.db)["skipped"] is True
        other.exec_driver_sql(f"SELECT pg_advisory_unlock({tallies.FOLD_LOCK})")
    assert tallies.fold_changes(rt.db)["skipped"] is False


def test_the_fold_runs_as_a_job_every_minute(db, rt, redis):
    shop = make_shop_with_programs(db, rt.cipher)
    issued_code(db, shop, "JOB", issued_at=START)
    scheduler = CronScheduler(connection=redis)
    scheduler.load_config_from_file("workers.cron")
    [job] = [j for j in scheduler.get_jobs() if j.func is fold_tallies]
    assert (job.queue_name, job.interval) == ("maintenance", 60)
    Queue("maintenance", connection=redis).enqueue(fold_tallies)
    run_worker(redis)
    assert tally_zone(db, shop.id) == "UTC"
    assert db.scalar(select(CodeTally.codes_issued).where(CodeTally.shop_id == shop.id)) == 1


def test_the_referral_loop_from_the_tallies_is_the_loop_from_the_rows_through_its_changes(db, rt):
    from tests.codes.test_referral_metrics import build as build_referrals

    shop = make_shop_with_programs(db, rt.cipher)
    tallies.fold_changes(rt.db)
    build_referrals(db, shop)
    friend_codes = db.scalars(select(PoolCode.id).where(PoolCode.shop_id == shop.id).order_by(PoolCode.id)).all()
    referred = db.scalars(select(Referral).where(Referral.shop_id == shop.id).order_by(Referral.id)).all()
    for referral, code_id in zip(referred, friend_codes, strict=False):  # each order used a friend code
        referral.pool_code_id = code_id
    referred[1].discount_amount = None  # Shopify did not say what this one took off
    db.commit()
    november = Period(date(2026, 11, 1), date(2026, 11, 30))
    programs = [None, *(program_of(db, shop, kind).id for kind in KINDS)]

    def same() -> None:
        for program_id in programs:
            from_tallies, from_codes = both_ways(db, shop.id, november, program_id)
            assert from_tallies == from_codes, program_id

    same()
    tallies.fold_changes(rt.db)
    same()
    # What the hold, the webhooks and the landing do later: a held reward issued, one voided, a blocked one
    # unblocked by hand, a referral erased, more clicks on an hour, a friend code handed out, a program gone.
    held = next(r for r in referred if r.status == "held")
    db.execute(update(Referral).where(Referral.id == held.id).values(status="rewarded"))
    rewarded = next(r for r in referred if r.status == "rewarded" and r.id != held.id)
    db.execute(update(Referral).where(Referral.id == rewarded.id).values(status="voided", reason="order_cancelled"))
    db.execute(delete(Referral).where(Referral.id == referred[-1].id))
    db.execute(update(ReferralClickHour).where(ReferralClickHour.shop_id == shop.id)
               .values(clicks=ReferralClickHour.clicks + 3, visitors=ReferralClickHour.visitors + 1))
    spare = db.scalar(select(PoolCode).where(PoolCode.shop_id == shop.id, PoolCode.handed_out_at.is_(None)).limit(1))
    spare.link_id = referred[0].link_id
    spare.handed_out_at, spare.status, spare.visitor = datetime(2026, 11, 20, 9, tzinfo=UTC), "handed_out", "late"
    db.commit()
    same()
    db.execute(update(Referral).where(Referral.id == referred[2].id).values(program_id=None))
    db.commit()
    tallies.fold_changes(rt.db)
    same()
    report = shop_metrics(db, shop.id, november)["referrals"]
    assert report["rewards"]["voided"] == 2 and report["link_clicks"] == 11 + 3 * 3
