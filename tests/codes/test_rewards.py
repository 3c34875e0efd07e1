"""Referral rewards (app/codes/rewards.py): a friend code's order recorded once, fraud controls, the
hold, voiding, and exactly one reward per referred order (real PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app import lifecycle
from app.codes import fingerprints, order_changes, pools, reconciliation, referrals, rewards
from app.codes.order_changes import OrderChanges, RefundFacts
from app.codes.reconciliation import PaidOrderFacts
from app.db import utcnow
from app.models import Customer, IssuedCode, PaidOrder, PoolCode, Program, Referral
from tests.codes.test_pool_take import a_pool
from tests.helpers import make_shop_with_programs, order_payload, program_of

ADVOCATE = 1001
FRIEND = 2002
KEY = "k" * 32
PAID = (utcnow() - timedelta(days=1)).replace(microsecond=0)  # the hold (14 days) still running


class Loop:
    """A shop with both referral programs on, an advocate with a link, and a pool of friend codes."""

    def __init__(self, rt, db) -> None:
        self.rt, self.db = rt, db
        self.shop = make_shop_with_programs(db, rt.cipher)
        self.friend_program = program_of(db, self.shop, "referral_friend")
        self.reward_program = program_of(db, self.shop, "referral_reward")
        self.friend_program.active = self.reward_program.active = True
        db.commit()
        self.link, _ = referrals.create_link(db, self.shop.id, ADVOCATE)
        fingerprints.remember_email(db, self.shop.id, ADVOCATE, KEY, "Ada.Lovelace@gmail.com")
        db.commit()
        a_pool(db, self.friend_program, 20)
        self.visitors = 0

    def friend_code(self, link_id: int | None = None) -> str:
        """A code handed out by the advocate's link to a new visitor."""
        self.visitors += 1
        with self.rt.db.session_scope() as session:
            code = pools.take_friend_code(session, self.shop.id, self.friend_program.id, f"visitor-{self.visitors}",
                                          link_id=link_id or self.link.id, on_low=lambda *_: None)
            return code.code

    def pay(self, order_id: int, code: str, *, customer: int | None = FRIEND, email: str | None = "friend@example.com",
            total: str = "100.00", paid_at: datetime = PAID) -> reconciliation.Reconciled:
        payload = order_payload(order_id, [(code, "10.00")], total=total, processed_at=paid_at.isoformat(),
                                customer_id=customer)
        if customer is not None:
            payload["customer"]["email"] = email
        order = PaidOrderFacts.from_webhook(payload, KEY)
        with self.rt.db.session_scope() as session:
            return reconciliation.reconcile(session, self.shop.id, order, "webhook")

    def referral(self, order_id: int) -> Referral:
        self.db.expire_all()
        return self.db.scalars(select(Referral).where(Referral.shop_id == self.shop.id,
                                                      Referral.shopify_order_id == order_id)).one()

    def release(self, now: datetime) -> rewards.Released:
        with self.rt.db.session_scope() as session:
            return rewards.release_due(session, self.shop.id, now=now)

    def settings(self, **values: object) -> None:
        program = program_of(self.db, self.shop, "referral_reward")
        for name, value in values.items():
            setattr(program, name, value)
        self.db.commit()


@pytest.fixture
def loop(rt, db) -> Loop:
    return Loop(rt, db)


def test_an_order_with_a_friend_code_is_recorded_as_a_held_referral_of_the_links_advocate(loop, db):
    code = loop.friend_code()
    outcome = loop.pay(501, code)

    assert outcome.friend_codes == 1 and outcome.referral == "referral held" and not outcome.reward_reserved
    referral = loop.referral(501)
    advocate = db.get(Customer, referral.advocate_id)
    assert advocate.shopify_customer_id == ADVOCATE and referral.link_id == loop.link.id
    assert (referral.friend_code, referral.friend_customer_id, referral.order_total, referral.discount_amount,
            referral.currency) == (code, FRIEND, Decimal("100.00"), Decimal("10.00"), "USD")
    assert referral.status == "held" and referral.reason is None
    assert referral.hold_until == PAID + timedelta(days=14)  # the default hold, from the order's time
    pool_code = db.scalars(select(PoolCode).where(PoolCode.code == code)).one()
    assert (pool_code.status, pool_code.order_id) == ("redeemed", 501)
    paid = db.scalars(select(PaidOrder).where(PaidOrder.shopify_order_id == 501)).one()
    assert paid.our_codes == 1 and paid.other_codes == 0 and paid.shopify_customer_id == FRIEND


def test_a_replayed_order_and_a_second_order_with_the_same_code_record_nothing_more(loop, db):
    code = loop.friend_code()
    loop.pay(501, code)
    assert loop.pay(501, code).referral == "referral recorded before"
    second = loop.pay(502, code, customer=3003)
    assert second.referral is None  # the code was the first order's: no referral for the second
    assert db.scalar(select(func.count()).select_from(Referral)) == 1


def test_a_friend_code_without_a_program_hold_ends_on_the_hold_and_rewards_the_advocate_once(loop, db):
    loop.pay(501, loop.friend_code())
    assert loop.release(PAID + timedelta(days=13)).as_dict() == {"rewarded": 0, "voided": 0, "reserved": 0}
    assert loop.release(PAID + timedelta(days=14)).as_dict() == {"rewarded": 1, "voided": 0, "reserved": 1}

    referral = loop.referral(501)
    assert referral.status == "rewarded" and referral.decided_at is not None
    reward = db.get(IssuedCode, referral.reward_code_id)
    assert reward.idempotency_key == rewards.reward_key(loop.shop.id, 501)
    assert reward.program_id == loop.reward_program.id and reward.status == "reserved"
    assert reward.customer_id == referral.advocate_id and reward.terms["lock_to_customer"] is True
    assert loop.release(PAID + timedelta(days=30)).as_dict() == {"rewarded": 0, "voided": 0, "reserved": 0}
    assert db.scalar(select(func.count()).select_from(IssuedCode)) == 1


def test_no_hold_rewards_at_reconciliation(loop, db):
    loop.settings(hold_days=0)
    outcome = loop.pay(501, loop.friend_code(), paid_at=utcnow() - timedelta(minutes=1))
    assert outcome.reward_reserved and outcome.referral == "referral rewarded"
    assert loop.referral(501).reward_code_id is not None


def test_the_buyer_being_the_advocate_is_never_rewarded_whatever_the_settings(loop):
    loop.settings(block_same_email=False, first_order_only=False, rewards_per_advocate_per_month=0)
    loop.pay(501, loop.friend_code(), customer=ADVOCATE, email="someone-else@example.com")
    referral = loop.referral(501)
    assert (referral.status, referral.reason) == ("blocked", "self_referral")
    assert loop.release(PAID + timedelta(days=30)).rewarded == 0


def test_the_advocates_email_however_written_is_a_self_referral_unless_the_merchant_turns_the_check_off(loop):
    loop.pay(501, loop.friend_code(), email="  adalovelace+friend@GoogleMail.com ")
    assert (loop.referral(501).status, loop.referral(501).reason) == ("blocked", "same_email")
    loop.settings(block_same_email=False)
    loop.pay(503, loop.friend_code(), customer=3003, email="ada.lovelace@gmail.com")
    assert loop.referral(503).status == "held"


def test_a_guest_checkout_with_the_advocates_email_is_blocked(loop):
    code = loop.friend_code()
    payload = order_payload(504, [(code, "10.00")], processed_at=PAID.isoformat(), customer_id=None)
    payload["email"] = "ada.lovelace@gmail.com"
    with loop.rt.db.session_scope() as session:
        reconciliation.reconcile(session, loop.shop.id, PaidOrderFacts.from_webhook(payload, KEY), "webhook")
    assert (loop.referral(504).status, loop.referral(504).reason) == ("blocked", "same_email")


def test_a_friend_who_had_paid_an_order_before_is_not_rewarded_when_first_order_only(loop):
    loop.pay(400, "NOT-OURS", paid_at=PAID - timedelta(days=3))  # an earlier order of the same buyer
    loop.pay(501, loop.friend_code())
    assert (loop.referral(501).status, loop.referral(501).reason) == ("blocked", "not_first_order")
    loop.settings(first_order_only=False)
    loop.pay(502, loop.friend_code())
    assert loop.referral(502).status == "held"


def test_an_advocates_referrals_are_capped_per_calendar_month_in_the_stores_time_zone(loop, db):
    loop.shop.iana_timezone = "America/New_York"
    db.commit()
    loop.settings(rewards_per_advocate_per_month=2)
    november = datetime(2026, 11, 10, 12, tzinfo=UTC)
    loop.pay(501, loop.friend_code(), customer=3001, paid_at=november)
    loop.pay(502, loop.friend_code(), customer=3002, paid_at=november)
    loop.pay(503, loop.friend_code(), customer=3003, paid_at=november)
    # 02:00 UTC on 1 December is still 30 November in New York: the same month, capped.
    loop.pay(504, loop.friend_code(), customer=3004, paid_at=datetime(2026, 12, 1, 2, tzinfo=UTC))
    loop.pay(505, loop.friend_code(), customer=3005, paid_at=datetime(2026, 12, 1, 6, tzinfo=UTC))
    assert [loop.referral(n).reason for n in range(501, 506)] == [
        None, None, "advocate_monthly_cap", "advocate_monthly_cap", None]


def test_a_cancellation_within_the_hold_voids_the_referral_and_no_reward_follows(loop):
    loop.pay(501, loop.friend_code())
    with loop.rt.db.session_scope() as session:
        recorded = order_changes.record_changes(session, loop.shop.id, OrderChanges(
            501, PAID + timedelta(days=2), "customer", ()))
    assert recorded.referral_voided == "order_cancelled" and "referral voided" in recorded.summary()
    assert (loop.referral(501).status, loop.referral(501).reason) == ("voided", "order_cancelled")
    assert loop.release(PAID + timedelta(days=30)).rewarded == 0


def test_refunds_void_only_beyond_the_merchants_share_and_only_within_the_hold(loop):
    def refund(refund_id: int, order_id: int, amount: str, at: datetime) -> str | None:
        with loop.rt.db.session_scope() as session:
            return order_changes.record_refund(session, loop.shop.id, RefundFacts(
                refund_id, order_id, Decimal(amount), "USD", at)).referral_voided

    loop.pay(501, loop.friend_code())
    assert refund(1, 501, "30.00", PAID + timedelta(days=1)) is None  # 30 % of 100: within the 50 % allowed
    assert refund(2, 501, "25.00", PAID + timedelta(days=2)) == "order_refunded"  # 55 %
    loop.pay(502, loop.friend_code(), customer=3003)
    assert refund(3, 502, "90.00", PAID + timedelta(days=20)) is None  # after the hold: not voided
    assert loop.release(PAID + timedelta(days=30)).as_dict() == {"rewarded": 1, "voided": 0, "reserved": 1}
    assert loop.referral(502).status == "rewarded"
    loop.settings(void_refund_percent=0)  # any refund voids
    loop.pay(503, loop.friend_code(), customer=3004)
    assert refund(4, 503, "0.01", PAID + timedelta(days=1)) == "order_refunded"
    assert refund(5, 503, "1.00", PAID + timedelta(days=1)) is None  # voided already
    with loop.rt.db.session_scope() as session:  # the order's cancellation, delivered after its refund
        order_changes.record_changes(session, loop.shop.id, OrderChanges(503, PAID + timedelta(days=1), "other", ()))
    assert loop.referral(503).reason == "order_cancelled"  # the merchant sees the cause, not its refund


def test_a_cancellation_delivered_before_the_orders_payment_voids_the_referral_when_it_is_recorded(loop):
    code = loop.friend_code()
    with loop.rt.db.session_scope() as session:
        order_changes.record_changes(session, loop.shop.id, OrderChanges(501, PAID + timedelta(hours=1), "fraud", ()))
    assert loop.pay(501, code).referral == "referral voided (order_cancelled)"


def test_the_hold_ending_with_the_reward_program_off_or_the_advocate_erased_voids_it(loop, db):
    loop.pay(501, loop.friend_code())
    loop.pay(502, loop.friend_code(), customer=3003)
    loop.settings(active=False)
    loop.release(PAID + timedelta(days=14, seconds=1))
    assert loop.referral(501).reason == "reward_program_off"
    loop.settings(active=True)
    loop.pay(503, loop.friend_code(), customer=3004)
    lifecycle.redact_customer(db, loop.shop, {"customer": {"id": ADVOCATE}}, current_event_id="e")
    db.commit()
    loop.release(PAID + timedelta(days=15))
    assert (loop.referral(503).status, loop.referral(503).reason) == ("voided", "advocate_erased")


def test_redacting_the_friend_erases_their_id_from_referrals_and_orders(loop, db):
    loop.pay(501, loop.friend_code())
    lifecycle.redact_customer(db, loop.shop, {"customer": {"id": FRIEND}}, current_event_id="e")
    db.commit()
    assert loop.referral(501).friend_customer_id is None
    assert db.scalar(select(PaidOrder.shopify_customer_id).where(PaidOrder.shopify_order_id == 501)) is None


def test_a_code_handed_out_by_another_shops_link_gives_that_shop_nothing(loop, rt, db):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    other_link, _ = referrals.create_link(db, other.id, ADVOCATE)
    db.commit()
    code = loop.friend_code(link_id=other_link.id)  # corrupt data: a link of another shop on our code
    loop.pay(501, code)
    assert (loop.referral(501).status, loop.referral(501).reason) == ("blocked", "no_advocate")


def test_concurrent_deliveries_of_one_order_and_concurrent_releases_reward_once(loop, db):
    code = loop.friend_code()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait()
            loop.pay(501, code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert db.scalar(select(func.count()).select_from(Referral)) == 1

    results: list[rewards.Released] = []

    def release() -> None:
        barrier.wait()
        results.append(loop.release(PAID + timedelta(days=15)))

    threads = [threading.Thread(target=release) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.rewarded for r in results) == 1
    assert db.scalar(select(func.count()).select_from(IssuedCode)) == 1


def test_the_scheduled_job_rewards_every_shops_due_referrals_and_queues_their_issuance(loop, db, monkeypatch):
    from workers import referrals as referral_jobs

    loop.pay(501, loop.friend_code())
    loop.pay(502, loop.friend_code(), customer=3003)  # still held
    loop.referral(501).hold_until = utcnow() - timedelta(seconds=1)  # 501's hold has just ended
    db.commit()
    queued: list[int] = []
    monkeypatch.setattr(referral_jobs, "enqueue_issuance", lambda _redis, shop_id: queued.append(shop_id))
    assert referral_jobs.release_rewards() == {"rewarded": 1, "voided": 0, "reserved": 1}
    assert queued == [loop.shop.id]
    assert loop.referral(502).status == "held"
    assert referral_jobs.release_rewards() == {"rewarded": 0, "voided": 0, "reserved": 0}


def test_the_reward_program_cannot_be_unlocked_from_the_advocate(loop, db):
    from app.codes.programs import update_program
    from app.errors import BadRequest

    with pytest.raises(BadRequest, match="lock_to_customer"):
        update_program(db, loop.shop.id, loop.reward_program.id, {"lock_to_customer": False})
    db.rollback()
    assert db.get(Program, loop.reward_program.id).lock_to_customer is True


def test_catch_up_orders_give_the_buyer_and_their_email_fingerprint_and_never_the_email():
    node = {"id": "gid://shopify/Order/77", "legacyResourceId": "77", "name": "#1077",
            "processedAt": "2026-12-01T10:00:00Z", "displayFinancialStatus": "PAID", "discountCodes": [],
            "email": "Ada.Lovelace+x@gmail.com", "customer": {"legacyResourceId": "1001"},
            "totalPriceSet": {"shopMoney": {"amount": "10.00", "currencyCode": "EUR"}}}
    order = PaidOrderFacts.from_graphql(node, KEY)
    assert order.customer_id == 1001
    assert order.buyer_email_hash == fingerprints.email_fingerprint(KEY, "adalovelace@gmail.com")
    assert "gmail" not in repr(order) and order.buyer_email_hash not in repr(order)
    guest = PaidOrderFacts.from_graphql(node | {"customer": None, "email": None}, KEY)
    assert (guest.customer_id, guest.buyer_email_hash) == (None, None)


def test_a_friend_codes_discount_and_order_count_in_the_metrics_like_our_other_codes(loop, db):
    from app.codes.metrics import Period, shop_metrics

    loop.pay(501, loop.friend_code(), total="80.00")
    report = shop_metrics(db, loop.shop.id, Period.parse(None, None))
    totals = report["totals"]
    assert totals["orders_with_codes"] == 1 and totals["revenue"] == {"USD": "80.00"}
    assert totals["discount_given"] == {"USD": "10.00"}  # what the friend code took off the order
    friend = next(p for p in report["programs"] if p["kind"] == "referral_friend")
    assert (friend["orders_with_codes"], friend["revenue"], friend["discount_given"]) == (
        1, {"USD": "80.00"}, {"USD": "10.00"})
    assert friend["codes_redeemed"] == 0  # friend codes are handed out, not issued: no redemption rate
    only = shop_metrics(db, loop.shop.id, Period.parse(None, None), program_id=loop.friend_program.id)
    assert only["totals"]["discount_given"] == {"USD": "10.00"} and only["totals"]["revenue"] == {"USD": "80.00"}


def test_a_catch_up_page_and_a_webhook_for_its_next_order_of_the_same_advocate_do_not_deadlock(loop, rt, db,
                                                                                                monkeypatch):
    """Catch-up reconciles a page in one transaction. It used to lock each order as it came to it: having
    recorded order A's referral (the advocate's row locked), it waited for order B's lock, held by B's
    webhook job, which waited for the advocate: PostgreSQL aborted one of them."""
    from app.codes.catch_up import CatchUp

    codes = {601: loop.friend_code(), 602: loop.friend_code()}
    nodes = [{"id": f"gid://shopify/Order/{order_id}", "legacyResourceId": str(order_id), "name": f"#{order_id}",
              "processedAt": PAID.isoformat(), "displayFinancialStatus": "PAID", "discountCodes": [code],
              "email": None, "customer": {"legacyResourceId": str(FRIEND + order_id)},
              "totalPriceSet": {"shopMoney": {"amount": "100.00", "currencyCode": "USD"}},
              "totalDiscountsSet": {"shopMoney": {"amount": "10.00", "currencyCode": "USD"}}}
             for order_id, code in codes.items()]
    first_recorded, go_on, errors = threading.Event(), threading.Event(), []
    real = reconciliation.reconcile

    def pausing(session, shop_id, order, source):  # type: ignore[no-untyped-def]
        outcome = real(session, shop_id, order, source)
        if source == "catch_up" and order.order_id == 601:
            first_recorded.set()  # the advocate's row is locked now, until the page commits
            go_on.wait(10)
        return outcome

    monkeypatch.setattr(reconciliation, "reconcile", pausing)

    def catch_up_page() -> None:
        try:
            with rt.db.session_scope() as session:
                CatchUp(rt.db, None, loop.shop.id, email_key=KEY)._apply(session, nodes)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def webhook_for_the_next_order() -> None:
        try:
            loop.pay(602, codes[602], customer=FRIEND + 602)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    page = threading.Thread(target=catch_up_page)
    page.start()
    assert first_recorded.wait(10)
    webhook = threading.Thread(target=webhook_for_the_next_order)
    webhook.start()
    webhook.join(0.5)  # it waits, for the order's lock (the deadlock: it had it, and waited for the advocate)
    go_on.set()
    page.join(15)
    webhook.join(15)
    assert not errors, errors
    assert {r.shopify_order_id: r.status for r in db.scalars(select(Referral))} == {601: "held", 602: "held"}
