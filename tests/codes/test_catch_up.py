"""Catch-up reconciliation page by page, with ``responses`` as Shopify's ``orders`` query: the walk,
its cursor, a failure mid-walk, two runs at once, and the schedule."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import responses
from sqlalchemy import func, select

from app.codes import catch_up
from app.codes.catch_up import OVERLAP, CatchUp, search_query
from app.db import utcnow
from app.models import IssuedCode, PaidOrder, ReconcileCursor, Shop
from app.queues import catch_up_job_id, job_status
from app.shopify import client
from app.shopify.client import AdminClient, AdminUnavailable
from tests.conftest import make_settings
from tests.helpers import issued_code, make_shop, make_shop_with_programs, session_token
from workers.reconcile import schedule_catch_up

URL = "https://demo.myshopify.com/admin/api/2026-10/graphql.json"
COST = {"requestedQueryCost": 352, "actualQueryCost": 20,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1980, "restoreRate": 100.0}}
BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def node(order_id: int, minute: int, codes: list[str] = (), status: str = "PAID") -> dict:  # type: ignore[assignment]
    def bag(amount: str) -> dict:
        return {"shopMoney": {"amount": amount, "currencyCode": "USD"}}

    moment = (BASE + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": f"gid://shopify/Order/{order_id}", "legacyResourceId": str(order_id), "name": f"#{order_id}",
            "processedAt": moment, "updatedAt": moment, "displayFinancialStatus": status,
            "discountCodes": list(codes), "totalPriceSet": bag("50.0"), "subtotalPriceSet": bag("45.0"),
            "totalDiscountsSet": bag("5.0" if codes else "0.0")}


class Orders:
    """Shopify's ``orders`` connection over a fixed list, ``page`` at a time; cursors are indexes."""

    def __init__(self, orders: list[dict]) -> None:
        self.orders = orders
        self.sent: list[dict] = []
        self.fail_after: str | None = None  # answer 503 to the page after this cursor
        self.during: Callable[[], None] | None = None  # run once while a request is being answered
        self.shop: dict | None = None  # the query's ``shop`` field

    def __call__(self, request) -> tuple[int, dict, str]:  # type: ignore[no-untyped-def]
        variables = json.loads(request.body)["variables"]
        self.sent.append(variables)
        if self.during is not None:
            self.during, during = None, self.during
            during()
        if self.fail_after is not None and variables["after"] == self.fail_after:
            return 503, {}, "unavailable"
        start = int(variables["after"] or 0)
        page = self.orders[start:start + variables["first"]]
        end = start + len(page)
        return 200, {}, json.dumps({"data": {"shop": self.shop, "orders": {
            "nodes": page, "pageInfo": {"hasNextPage": end < len(self.orders), "endCursor": str(end)}}},
            "extensions": {"cost": COST}})


@pytest.fixture
def store():  # type: ignore[no-untyped-def]
    fake = Orders([])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, URL, callback=fake)
        yield fake


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    shop = make_shop_with_programs(db, rt.cipher)
    shop.installed_at = BASE - timedelta(hours=1)
    db.commit()
    return shop


def walker(rt, shop, page_size: int = 2) -> CatchUp:  # type: ignore[no-untyped-def]
    return CatchUp(rt.db, AdminClient(make_settings(), shop.domain, "shpat_x", wait_budget=0), shop.id,
                   page_size=page_size)


def cursor(db, shop) -> ReconcileCursor:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.get(ReconcileCursor, shop.id)


def walk_all(walk: CatchUp) -> list[catch_up.Page]:
    pages = [walk.page()]
    while not pages[-1].finished:
        pages.append(walk.page())
    return pages


def test_a_walk_reads_every_page_and_moves_the_cursor_to_the_newest_update(db, rt, shop, store):
    code = issued_code(db, shop, "WELCOME-CATCH1")
    store.orders = [node(1, 1), node(2, 2, ["welcome-catch1"]), node(3, 3), node(4, 4, status="PENDING"), node(5, 5)]
    pages = walk_all(walker(rt, shop))
    assert [p.orders for p in pages] == [2, 2, 1] and sum(p.reconciled for p in pages) == 4
    assert sum(p.recovered for p in pages) == 4 and sum(p.redeemed for p in pages) == 1
    # Asked from the install (less the overlap), each page after the last one's end cursor.
    assert [v["after"] for v in store.sent] == [None, "2", "4"]
    assert {v["query"] for v in store.sent} == {search_query(shop.installed_at - OVERLAP)}
    assert store.sent[0]["query"] == "updated_at:>='2026-11-20T10:55:00Z'"
    now = cursor(db, shop)
    assert now.updated_since == BASE + timedelta(minutes=5) and now.walk_since is None
    assert (now.last_orders, now.last_recovered, now.walk_pages) == (5, 4, 0)
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 4  # the pending order waits
    db.expire_all()
    assert db.get(IssuedCode, code.id).order_id == 2


def test_the_next_walk_starts_an_overlap_before_the_newest_update(db, rt, shop, store):
    store.orders = [node(1, 1)]
    walk_all(walker(rt, shop))
    store.sent.clear()
    walk_all(walker(rt, shop))
    assert store.sent[0]["query"] == search_query(BASE + timedelta(minutes=1) - OVERLAP)
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 1  # read twice, recorded once
    assert cursor(db, shop).last_recovered == 0


def test_a_failure_mid_walk_keeps_the_pages_done_and_resumes_after_them(db, rt, shop, store, monkeypatch):
    monkeypatch.setattr(client, "RETRY_DELAYS", (0, 0))
    store.orders = [node(n, n) for n in range(1, 6)]
    store.fail_after = "2"
    walk = walker(rt, shop)
    assert walk.page().orders == 2
    with pytest.raises(AdminUnavailable):
        walk.page()
    stuck = cursor(db, shop)
    assert (stuck.walk_after, stuck.walk_pages, stuck.walk_orders) == ("2", 1, 2)
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 2
    store.fail_after = None
    store.sent.clear()
    walk_all(walker(rt, shop))
    assert store.sent[0]["after"] == "2"  # resumed, not restarted
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 5
    assert cursor(db, shop).last_orders == 5


def test_a_page_another_run_took_meanwhile_is_not_applied_twice(db, rt, shop, store):
    store.orders = [node(n, n) for n in range(1, 6)]
    first, second = walker(rt, shop), walker(rt, shop)
    first.page()

    def other_run_moves_on() -> None:  # while the second run waits for its answer
        with rt.db.session_scope() as session:
            session.get(ReconcileCursor, shop.id).walk_after = "4"

    store.during = other_run_moves_on
    page = second.page()  # asked for page 2, answered after the cursor had moved past it
    assert (page.orders, page.reconciled) == (0, 0) and cursor(db, shop).walk_after == "4"
    assert cursor(db, shop).walk_pages == 1  # the late answer was not counted either
    assert db.scalar(select(func.count()).select_from(PaidOrder)) == 2


# --- the schedule ---------------------------------------------------------------------------------

def test_the_schedule_queues_each_due_shop_once_per_interval(db, rt, redis):
    due = make_shop(db, rt.cipher, domain="due.myshopify.com")
    make_shop(db, rt.cipher, domain="gone.myshopify.com", installed=False)
    make_shop(db, rt.cipher, domain="new.myshopify.com", set_up=False)
    assert schedule_catch_up() == {"queued": 1}
    assert job_status(redis, catch_up_job_id(due.id)) is not None
    assert schedule_catch_up() == {"queued": 0}  # its next run is 15 minutes away
    after = cursor(db, due)
    assert after.interval_minutes == 15
    assert timedelta(minutes=14) < after.next_run_at - utcnow() <= timedelta(minutes=15)


def test_a_shorter_interval_brings_the_next_run_forward(db, rt, redis):
    shop = make_shop(db, rt.cipher)
    schedule_catch_up()
    catch_up.set_interval(db, db.get(Shop, shop.id), 1)
    db.commit()
    assert cursor(db, shop).next_run_at - utcnow() <= timedelta(minutes=1)


@pytest.mark.parametrize("minutes", [0, 1441, "15", True, 2.5])
def test_a_bad_interval_is_refused(db, rt, minutes):
    shop = make_shop(db, rt.cipher)
    with pytest.raises(catch_up.BadRequest, match="whole number of minutes from 1 to 1440"):
        catch_up.set_interval(db, shop, minutes)


def test_scheduling_and_expiry_work_on_sqlite_too(sqlite_app):
    from app.codes import expiry

    rt = sqlite_app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        shop = make_shop_with_programs(session, rt.cipher)
        issued_code(session, shop, "OLD-SQLITE", expires_at=utcnow() - timedelta(minutes=1))
        assert catch_up.due_shops(session, utcnow()) == [shop.id]
        catch_up.mark_scheduled(session, shop, utcnow())
    with rt.db.session_scope() as session:
        assert catch_up.due_shops(session, utcnow()) == []
        assert expiry.expire_due(session, shop.id, utcnow()) == 1
    with rt.db.session_scope() as session:
        assert session.scalars(select(IssuedCode.status)).all() == ["expired"]


def test_an_order_that_cannot_be_read_is_skipped_not_blocking_the_walk(db, rt, shop, store):
    broken = {**node(2, 2), "totalPriceSet": {"shopMoney": {"amount": "lots", "currencyCode": "USD"}}}
    store.orders = [node(1, 1), broken, node(3, 3)]
    pages = walk_all(walker(rt, shop))
    assert sum(p.orders for p in pages) == 3 and sum(p.reconciled for p in pages) == 2
    assert sorted(o.shopify_order_id for o in db.scalars(select(PaidOrder))) == [1, 3]
    assert cursor(db, shop).updated_since == BASE + timedelta(minutes=3)


@pytest.mark.parametrize(("answered", "kept"), [("America/Toronto", "America/Toronto"), ("Nowhere/Special", None),
                                                (None, None)])
def test_catch_up_keeps_the_stores_time_zone(db, rt, shop, store, answered, kept):
    store.orders = [node(1, 1)]
    store.shop = {"ianaTimezone": answered} if answered else None
    walk_all(walker(rt, shop))
    db.expire_all()
    assert db.get(Shop, shop.id).iana_timezone == kept


# --- recent runs ----------------------------------------------------------------------------------

def test_a_run_that_recovered_an_order_stays_in_sight_after_a_later_empty_one(db, rt, shop, store, runner, client):
    store.orders = [node(1, 1)]
    walk_all(walker(rt, shop))  # the scheduler's run: the order's webhook never came
    walk_all(walker(rt, shop))  # the operator's own run a minute later: read again, nothing new
    runs = catch_up.status_json(cursor(db, shop))["recent_runs"]
    assert [(run["orders"], run["recovered"], run["pages"]) for run in runs] == [(1, 0, 1), (1, 1, 1)]
    assert runs[0]["completed_at"] >= runs[1]["completed_at"] and runs[0]["started_at"] is not None

    shown = runner.invoke(args=["reconcile", "status", shop.domain])
    assert shown.exit_code == 0, shown.output
    table = shown.output[shown.output.index("RUN FINISHED"):].splitlines()
    assert [row.split()[-3:] for row in table[1:]] == [["1", "1", "0"], ["1", "1", "1"]]

    body = client.get("/api/reconcile", headers={"Authorization": f"Bearer {session_token(shop.domain)}"}).get_json()
    assert [run["recovered"] for run in body["recent_runs"]] == [0, 1] and body["last_recovered"] == 0


def test_only_the_last_few_runs_are_kept(db, rt, shop, store):
    for _ in range(catch_up.RECENT_RUNS + 2):
        walk_all(walker(rt, shop))
    assert len(cursor(db, shop).recent_runs) == catch_up.RECENT_RUNS


def test_status_before_any_run_says_so(runner, shop):
    shown = runner.invoke(args=["reconcile", "status", shop.domain])
    assert shown.exit_code == 0 and "no catch-up run has finished yet" in shown.output
