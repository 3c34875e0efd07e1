"""The landing records clicks and new visitors per link and hour (``referral_click_hours``), the first
step of the referral funnel in the metrics: on real requests, on PostgreSQL and SQLite, under races."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.codes import landing, referrals
from app.models import PoolCode, ReferralClickHour
from tests.codes.test_pool_take import a_pool
from tests.helpers import make_shop_with_programs, program_of
from tests.referrals import test_friend_landing
from tests.referrals.test_friend_landing import code_of, set_caps

friend, link = test_friend_landing.friend, test_friend_landing.link  # the landing tests' fixtures


def hours(session, link_id: int) -> list[tuple[datetime, int, int]]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return [(row.hour, row.clicks, row.visitors) for row in session.scalars(
        select(ReferralClickHour).where(ReferralClickHour.link_id == link_id).order_by(ReferralClickHour.hour))]


def this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def test_a_landing_counts_a_click_and_a_new_browser_counts_a_visitor(app, client, db, friend, link):
    first = code_of(client.get(f"/r/{link.token}"))
    [(hour, clicks, visitors)] = hours(db, link.id)
    assert (clicks, visitors) == (1, 1) and hour == this_hour()  # (a test at hh:59:59.999 would be unlucky)
    assert code_of(client.get(f"/r/{link.token}")) == first  # the same browser: a click, not a visitor
    assert hours(db, link.id)[0][1:] == (2, 1)
    app.test_client().get(f"/r/{link.token}")  # another browser
    assert hours(db, link.id)[0][1:] == (3, 2)
    client.head(f"/r/{link.token}")  # a link checker's look is neither
    assert hours(db, link.id)[0][1:] == (3, 2)


def test_a_click_that_gets_no_code_is_a_click_without_a_visitor(client, db, friend, link):
    set_caps(db, friend, per_link_per_day=1)
    code_of(client.get(f"/r/{link.token}"))
    client.delete_cookie("oncecode_friend", path="/r/")
    capped = client.get(f"/r/{link.token}")  # a new browser, refused by the link's cap
    assert capped.status_code == 200
    assert hours(db, link.id)[0][1:] == (2, 1)


def test_a_paused_program_still_counts_the_click(client, db, rt):
    shop = make_shop_with_programs(db, rt.cipher)  # referral programs off: the friendly page
    made, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    assert client.get(f"/r/{made.token}").status_code == 200
    assert hours(db, made.id)[0][1:] == (1, 0)


def test_each_hour_has_its_own_row_and_a_spent_code_makes_a_new_visitor(db, rt, friend, link):
    def open_at(moment: datetime, key: str | None) -> landing.FriendLanding:
        found = landing.land_friend(db, link.token, key, address_allows=lambda *_: True, now=moment)
        db.commit()
        referrals.record_click(rt.db, found.click)  # as the route does once the landing has committed
        return found

    hour = this_hour() - timedelta(hours=2)
    first = open_at(hour - timedelta(microseconds=1), None)
    assert open_at(hour, first.visitor_key).code == first.code
    known = open_at(hour + timedelta(minutes=30), "a-key-whose-code-is-unknown-here")
    assert known.visitor_key == "a-key-whose-code-is-unknown-here"  # a key of no code: kept, not a new browser
    assert hours(db, link.id) == [(hour - timedelta(hours=1), 1, 1), (hour, 2, 0)]
    db.execute(update(PoolCode).where(PoolCode.code == first.code).values(expires_at=hour))
    db.commit()
    spent = open_at(hour + timedelta(minutes=40), first.visitor_key)  # its code expired: a new key, a new code
    assert spent.visitor_key != first.visitor_key and spent.code != first.code
    assert hours(db, link.id)[1:] == [(hour, 3, 1)]


def test_concurrent_landings_count_every_click_and_visitor(app, db, friend, link):
    set_caps(db, friend, per_link_per_day=0)
    barrier = threading.Barrier(20)
    problems: list[BaseException] = []

    def visitor(n: int) -> None:
        browser = app.test_client()
        barrier.wait()
        try:
            code_of(browser.get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": f"10.1.{n}.1"}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not problems, problems[:3]
    assert sum(clicks for _, clicks, _ in hours(db, link.id)) == 20
    assert sum(visitors for _, _, visitors in hours(db, link.id)) == 20


def test_the_hour_upsert_works_on_sqlite(sqlite_app):
    rt = sqlite_app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        shop = make_shop_with_programs(session, rt.cipher)
        for kind in ("referral_reward", "referral_friend"):
            program_of(session, shop, kind).active = True
            session.commit()  # (program_of expires what is not committed)
        a_pool(session, program_of(session, shop, "referral_friend"), 5)
        made, _ = referrals.create_link(session, shop.id, 42)
        token, link_id = made.token, made.id
    client = sqlite_app.test_client()
    first = code_of(client.get(f"/r/{token}"))
    assert code_of(client.get(f"/r/{token}")) == first
    sqlite_app.test_client().get(f"/r/{token}")
    with rt.db.session_scope() as session:
        assert [row[1:] for row in hours(session, link_id)] == [(3, 2)]
