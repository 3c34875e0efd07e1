"""The referral loop in the metrics, on a constructed data set whose every figure can be checked by hand.

November 2026 (UTC days unless said). Advocates B (Shopify customer 1002, recorded first), A (1001, two
links: A1 retired, then A2) and C (1003). Every row of another shop is also in range and never counted.

Click hours (clicks / new visitors):
| link | hour (UTC)       | clicks | visitors | note                                        |
|------|------------------|--------|----------|---------------------------------------------|
| C    | 10-31 23:00      | 9      | 2        | before the range                            |
| A2   | 11-01 00:00      | 5      | 3        |                                             |
| A2   | 11-02 04:00      | 2      | 1        | 11-01 23:00 in New York                     |
| B    | 11-02 10:00      | 4      | 4        |                                             |
| C    | 12-01 00:00      | 7      | 7        | after the range                             |

Friend codes handed out: A2 11-01 01:00, 11-01 02:00, 11-02 23:30 (handed out, redeemed, expired);
B 3 × 11-02 11:00; C 2 × 11-03 10:00; C 10-31 23:59 and 12-01 00:00 (outside). Available codes count
nothing. → 8 codes: 11-01 2, 11-02 4, 11-03 2.

Friend orders (referrals), by the order's time:
| ref | advocate (link) | ordered (UTC)  | total      | status / reason             |
|-----|-----------------|----------------|------------|-----------------------------|
| R1  | A (A2)          | 11-01 03:00    | 100.00 USD | rewarded                    |
| R2  | A (A1)          | 11-02 04:30    |  50.00 USD | held (11-01 in New York)    |
| R3  | B               | 11-02 13:00    |  80.00 USD | voided, order_refunded      |
| R4  | B               | 11-03 09:00    |  20.00 CAD | blocked, self_referral      |
| R5  | C               | 11-04 00:00    | 500.00 USD | rewarded                    |
| R6  | C               | 10-31 23:00    |  40.00 USD | rewarded (before the range) |
| R7  | none            | 11-05 00:00    |  10.00 USD | blocked, no_advocate        |

Totals: clicks 11, visitors 8, friend codes 8, friend orders 6 (R1–R5, R7), conversion 6/8 = 0.75,
referred revenue 740.00 USD + 20.00 CAD, rewarded 600.00 USD; rewards pending 1, issued 2, voided 1,
blocked 2. Top advocates: A and B have 2 orders each, A more revenue (150 vs 100) though B's id is
lower; C has the most revenue but 1 order, so comes last. R7 has no advocate.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from app.codes import referrals, tallies
from app.codes.metrics import Period, shop_metrics
from app.db import utcnow
from app.models import PoolCode, Referral, ReferralClickHour, ReferralLink, Shop
from tests.codes.test_pool_take import a_pool
from tests.helpers import make_shop_with_programs, program_of, session_token

NOVEMBER = Period(date(2026, 11, 1), date(2026, 11, 30))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def a_link(session, shop, shopify_customer_id: int, retire: bool = False) -> ReferralLink:  # type: ignore[no-untyped-def]
    link, _ = referrals.create_link(session, shop.id, shopify_customer_id)
    session.commit()
    if retire:
        referrals.retire(session, link)
        session.commit()
    return link


def build(session, shop) -> dict[str, ReferralLink]:  # type: ignore[no-untyped-def]
    """The data set of the docstring, written straight into the tables."""
    links = {"B": a_link(session, shop, 1002)}
    links["A1"] = a_link(session, shop, 1001, retire=True)
    links["A2"] = a_link(session, shop, 1001)
    links["C"] = a_link(session, shop, 1003)
    for link, hour, clicks, visitors in [("C", "2026-10-31T23:00", 9, 2), ("A2", "2026-11-01T00:00", 5, 3),
                                         ("A2", "2026-11-02T04:00", 2, 1), ("B", "2026-11-02T10:00", 4, 4),
                                         ("C", "2026-12-01T00:00", 7, 7)]:
        session.add(ReferralClickHour(shop_id=shop.id, link_id=links[link].id, hour=at(hour), clicks=clicks,
                                      visitors=visitors))
    friend = program_of(session, shop, "referral_friend")
    pool = a_pool(session, friend, 14, start=at("2026-10-25T00:00"), days=60)
    handed = [("A2", "2026-11-01T01:00", "handed_out"), ("A2", "2026-11-01T02:00", "redeemed"),
              ("A2", "2026-11-02T23:30", "expired"), ("B", "2026-11-02T11:00", "handed_out"),
              ("B", "2026-11-02T11:00", "handed_out"), ("B", "2026-11-02T11:00", "handed_out"),
              ("C", "2026-11-03T10:00", "handed_out"), ("C", "2026-11-03T10:00", "handed_out"),
              ("C", "2026-10-31T23:59", "handed_out"), ("C", "2026-12-01T00:00", "handed_out")]
    codes = session.scalars(select(PoolCode).where(PoolCode.pool_id == pool.id).order_by(PoolCode.id)).all()
    for code, (link, moment, status) in zip(codes, handed, strict=False):
        code.link_id, code.handed_out_at, code.status = links[link].id, at(moment), status
        code.visitor = f"visitor-{code.id}"
    session.commit()  # (program_of expires what is not committed)
    reward = program_of(session, shop, "referral_reward")
    advocates = {name: links[name].customer_id for name in links}
    for n, (link, ordered, total, currency, status, reason) in enumerate([
            ("A2", "2026-11-01T03:00", "100.00", "USD", "rewarded", None),
            ("A1", "2026-11-02T04:30", "50.00", "USD", "held", None),
            ("B", "2026-11-02T13:00", "80.00", "USD", "voided", "order_refunded"),
            ("B", "2026-11-03T09:00", "20.00", "CAD", "blocked", "self_referral"),
            ("C", "2026-11-04T00:00", "500.00", "USD", "rewarded", None),
            ("C", "2026-10-31T23:00", "40.00", "USD", "rewarded", None),
            (None, "2026-11-05T00:00", "10.00", "USD", "blocked", "no_advocate")], start=1):
        session.add(Referral(
            shop_id=shop.id, program_id=reward.id, link_id=links[link].id if link else None,
            advocate_id=advocates[link] if link else None, friend_code=f"FRIEND-R{n}", shopify_order_id=5000 + n,
            order_name=f"#{5000 + n}", currency=currency, order_total=Decimal(total), discount_amount=Decimal("5.00"),
            ordered_at=at(ordered), status=status, reason=reason, hold_until=at(ordered) + timedelta(days=14)))
    session.commit()
    return links


def noise(session, cipher) -> None:  # type: ignore[no-untyped-def]
    """Another shop with a click, a code and a friend order in November: never in the first shop's figures."""
    other = make_shop_with_programs(session, cipher, domain="other.myshopify.com")
    link = a_link(session, other, 1001)
    session.add(ReferralClickHour(shop_id=other.id, link_id=link.id, hour=at("2026-11-10T10:00"), clicks=50,
                                  visitors=50))
    pool = a_pool(session, program_of(session, other, "referral_friend"), 1, start=at("2026-11-01T00:00"), days=30)
    session.execute(update(PoolCode).where(PoolCode.pool_id == pool.id).values(
        status="handed_out", link_id=link.id, handed_out_at=at("2026-11-10T10:00"), visitor="other"))
    session.add(Referral(shop_id=other.id, link_id=link.id, advocate_id=link.customer_id, friend_code="OTHER",
                         shopify_order_id=9999, order_name="#9999", currency="USD", order_total=Decimal("999.00"),
                         ordered_at=at("2026-11-10T11:00"), status="held", hold_until=at("2026-11-24T11:00")))
    session.commit()


def built(db, rt, source: str):  # type: ignore[no-untyped-def]
    """The data set, to be read from ``source`` (see ``tests/codes/test_metrics.py``): the rows, tallies
    rebuilt from them, the triggers' changes not folded yet, or those changes folded."""
    shop = make_shop_with_programs(db, rt.cipher)
    if source in ("triggered", "folded"):
        tallies.fold_changes(rt.db)
    shop.links = build(db, shop)
    noise(db, rt.cipher)
    if source in ("rebuilt", "folded"):
        tallies.fold_changes(rt.db)
    db.commit()
    assert (db.scalar(select(Shop.tally_zone).where(Shop.id == shop.id)) == "UTC") == (source != "codes")
    return shop


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return built(db, rt, "folded")


@pytest.fixture(params=["codes", "rebuilt", "triggered"])
def every_way(db, rt, request):  # type: ignore[no-untyped-def]
    """The data set read each way: every figure must come out the same from each (folded: ``shop``, which
    the tests of the API and the CLI read)."""
    return built(db, rt, request.param)


def test_the_referral_loop_over_the_range_is_exact(db, every_way):
    loop = shop_metrics(db, every_way.id, NOVEMBER)["referrals"]
    links = every_way.links
    assert loop == {
        "link_clicks": 11, "unique_visitors": 8, "friend_codes": 8, "friend_orders": 6, "conversion": 0.75,
        "referred_revenue": {"CAD": "20.00", "USD": "740.00"}, "rewarded_revenue": {"USD": "600.00"},
        "rewards": {"pending": 1, "issued": 2, "voided": 1, "blocked": 2},
        "voided_reasons": {"order_refunded": 1}, "blocked_reasons": {"no_advocate": 1, "self_referral": 1},
        "top_advocates": [
            {"customer_id": 1001, "link_id": links["A2"].id, "friend_orders": 2, "rewarded": 1,
             "revenue": {"USD": "150.00"}},
            {"customer_id": 1002, "link_id": links["B"].id, "friend_orders": 2, "rewarded": 0,
             "revenue": {"CAD": "20.00", "USD": "80.00"}},
            {"customer_id": 1003, "link_id": links["C"].id, "friend_orders": 1, "rewarded": 1,
             "revenue": {"USD": "500.00"}},
        ],
    }


def test_the_daily_series_is_in_the_stores_days_and_adds_up(db, every_way):
    daily = {d["date"]: d["referrals"] for d in shop_metrics(db, every_way.id, NOVEMBER)["daily"]}
    assert daily["2026-11-01"] == {"link_clicks": 5, "unique_visitors": 3, "friend_codes": 2, "friend_orders": 1,
                                   "referred_revenue": {"USD": "100.00"}, "rewards_issued": 1}
    assert daily["2026-11-02"] == {"link_clicks": 6, "unique_visitors": 5, "friend_codes": 4, "friend_orders": 2,
                                   "referred_revenue": {"USD": "130.00"}, "rewards_issued": 0}
    assert (daily["2026-11-03"]["friend_codes"], daily["2026-11-03"]["referred_revenue"]) == (2, {"CAD": "20.00"})
    assert (daily["2026-11-04"]["rewards_issued"], daily["2026-11-05"]["friend_orders"]) == (1, 1)
    assert daily["2026-11-30"] == {"link_clicks": 0, "unique_visitors": 0, "friend_codes": 0, "friend_orders": 0,
                                   "referred_revenue": {}, "rewards_issued": 0}
    for figure, total in [("link_clicks", 11), ("unique_visitors", 8), ("friend_codes", 8), ("friend_orders", 6),
                          ("rewards_issued", 2)]:
        assert sum(day[figure] for day in daily.values()) == total, figure


def test_new_york_days_move_what_happened_around_midnight(db, shop):
    # New York is UTC-4 until 06:00 UTC on 1 November (then UTC-5): its 31 October runs from 04:00 UTC
    # on the 31st to 04:00 UTC on 1 November, its 1 November from there to 05:00 UTC on the 2nd.
    report = shop_metrics(db, shop.id, Period(date(2026, 10, 31), date(2026, 11, 1), "America/New_York"))
    daily = {d["date"]: d["referrals"] for d in report["daily"]}
    assert daily["2026-10-31"] == {"link_clicks": 14, "unique_visitors": 5, "friend_codes": 3, "friend_orders": 2,
                                   "referred_revenue": {"USD": "140.00"}, "rewards_issued": 2}
    assert daily["2026-11-01"] == {"link_clicks": 2, "unique_visitors": 1, "friend_codes": 0, "friend_orders": 1,
                                   "referred_revenue": {"USD": "50.00"}, "rewards_issued": 0}
    assert report["referrals"]["rewards"] == {"pending": 1, "issued": 2, "voided": 0, "blocked": 0}
    assert [a["customer_id"] for a in report["referrals"]["top_advocates"]] == [1001, 1003]


def test_each_referral_program_has_its_share_of_the_loop(db, every_way):
    by_kind = {p["kind"]: p for p in shop_metrics(db, every_way.id, NOVEMBER)["programs"]}
    assert by_kind["referral_friend"]["referrals"] == {"friend_codes": 8}
    reward = by_kind["referral_reward"]["referrals"]
    assert (reward["friend_orders"], reward["rewards"], reward["referred_revenue"]) == (
        6, {"pending": 1, "issued": 2, "voided": 1, "blocked": 2}, {"CAD": "20.00", "USD": "740.00"})
    assert "referrals" not in by_kind["welcome"]


def test_a_referral_programs_report_shows_the_loop_and_another_programs_none(db, every_way):
    whole = shop_metrics(db, every_way.id, NOVEMBER)["referrals"]
    for kind in ("referral_friend", "referral_reward"):
        report = shop_metrics(db, every_way.id, NOVEMBER, program_id=program_of(db, every_way, kind).id)
        assert report["referrals"] == whole and report["daily"][0]["referrals"]["link_clicks"] == 5
    welcome = shop_metrics(db, every_way.id, NOVEMBER, program_id=program_of(db, every_way, "welcome").id)
    assert welcome["referrals"] is None and "referrals" not in welcome["daily"][0]


def test_an_empty_shop_has_zeros_and_no_conversion(db, rt):
    fresh = make_shop_with_programs(db, rt.cipher, domain="fresh.myshopify.com")
    report = shop_metrics(db, fresh.id, NOVEMBER)
    assert report["referrals"] == {
        "link_clicks": 0, "unique_visitors": 0, "friend_codes": 0, "friend_orders": 0, "conversion": None,
        "referred_revenue": {}, "rewarded_revenue": {},
        "rewards": {"pending": 0, "issued": 0, "voided": 0, "blocked": 0},
        "voided_reasons": {}, "blocked_reasons": {}, "top_advocates": []}


def test_a_range_outside_the_data_is_all_zeros(db, shop):
    loop = shop_metrics(db, shop.id, Period(date(2026, 1, 1), date(2026, 1, 31)), daily=False)["referrals"]
    assert (loop["link_clicks"], loop["friend_codes"], loop["friend_orders"], loop["conversion"]) == (0, 0, 0, None)


def test_only_ten_advocates_are_shown(db, rt):
    shop = make_shop_with_programs(db, rt.cipher, domain="many.myshopify.com")
    for n in range(12):
        link = a_link(db, shop, 2000 + n)
        for m in range(n % 3 + 1):  # 1, 2 or 3 friend orders
            db.add(Referral(shop_id=shop.id, link_id=link.id, advocate_id=link.customer_id, friend_code=f"F{n}-{m}",
                            shopify_order_id=100 * n + m + 1, order_name="#1", currency="USD",
                            order_total=Decimal(10 + n), ordered_at=at("2026-11-10T10:00"), status="held",
                            hold_until=at("2026-11-24T10:00")))
    db.commit()
    top = shop_metrics(db, shop.id, NOVEMBER, daily=False)["referrals"]["top_advocates"]
    # 3 orders: n = 11, 8, 5, 2 (more revenue first); 2 orders: 10, 7, 4, 1; then 1 order: 9, 6.
    assert [a["customer_id"] - 2000 for a in top] == [11, 8, 5, 2, 10, 7, 4, 1, 9, 6]


def test_the_loop_is_the_same_on_sqlite(db, shop, sqlite_app):
    lite_rt = sqlite_app.extensions["oncecode"]
    with lite_rt.db.session_scope() as session:
        lite = make_shop_with_programs(session, lite_rt.cipher)
        build(session, lite)
        noise(session, lite_rt.cipher)
        period = Period(date(2026, 10, 31), date(2026, 11, 30), "America/New_York")
        on_sqlite = shop_metrics(session, lite.id, period)
    on_postgres = shop_metrics(db, shop.id, period)

    def strip(report):  # type: ignore[no-untyped-def]
        loop = report["referrals"]
        return {**loop, "top_advocates": [{**a, "link_id": None} for a in loop["top_advocates"]]}

    assert strip(on_sqlite) == strip(on_postgres) and on_sqlite["referrals"]["friend_orders"] == 7
    assert [d["referrals"] for d in on_sqlite["daily"]] == [d["referrals"] for d in on_postgres["daily"]]


# --- the API, the CLI and the admin page ------------------------------------------------------------

def test_the_api_serves_the_referral_loop(client, shop):
    answer = client.get("/api/metrics?from=2026-11-01&to=2026-11-30",
                        headers={"Authorization": f"Bearer {session_token(shop.domain)}"})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["referrals"]["friend_orders"] == 6 and body["referrals"]["conversion"] == 0.75
    assert body["daily"][0]["referrals"]["link_clicks"] == 5


def test_the_cli_prints_the_referral_loop(runner, shop):
    result = runner.invoke(args=["metrics", shop.domain, "--from", "2026-11-01", "--to", "2026-11-30", "--daily"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def row(start: str) -> str:
        return next(line for line in lines if line.startswith(start))

    assert row("link clicks").split()[-4:] == ["11", "(8", "unique", "visitors)"]
    assert row("friend orders").split()[2:] == ["6", "(75.0", "%", "of", "the", "friend", "codes)"]
    assert row("referred revenue").endswith("20.00 CAD, 740.00 USD")
    assert row("rewards").split()[1:] == ["1", "pending,", "2", "issued,", "1", "voided,", "2", "blocked"]
    assert row("blocked because").endswith("no_advocate 1, self_referral 1")
    assert row("1001").split() == ["1001", str(shop.links["A2"].id), "2", "1", "150.00", "USD"]
    referral_days = [line for line in lines if line.startswith("2026-11-02")]
    assert referral_days[-1].split()[1:6] == ["6", "5", "4", "2", "0"]  # clicks, visitors, codes, orders, rewards


def test_the_cli_prints_no_referral_loop_for_another_program(runner, shop):
    result = runner.invoke(args=["metrics", shop.domain, "--from", "2026-11-01", "--to", "2026-11-30",
                                 "--program", "welcome"])
    assert result.exit_code == 0 and "link clicks" not in result.output and "ADVOCATE" not in result.output


def test_the_admin_page_shows_the_referral_funnel(client, db, rt):
    from tests.auth.test_install import SHOP, launch_params

    shop = make_shop_with_programs(db, rt.cipher, domain=SHOP)
    link = a_link(db, shop, 1001)
    now = utcnow()
    db.add(ReferralClickHour(shop_id=shop.id, link_id=link.id, hour=now.replace(minute=0, second=0, microsecond=0),
                             clicks=40, visitors=25))
    pool = a_pool(db, program_of(db, shop, "referral_friend"), 10)
    db.execute(update(PoolCode).where(PoolCode.pool_id == pool.id).values(
        status="handed_out", link_id=link.id, handed_out_at=now, visitor=PoolCode.code))
    for n, status in enumerate(["rewarded", "held", "held", "voided"]):
        db.add(Referral(shop_id=shop.id, link_id=link.id, advocate_id=link.customer_id, friend_code=f"F{n}",
                        shopify_order_id=n + 1, order_name=f"#{n}", currency="USD", order_total=Decimal("25.00"),
                        ordered_at=now, status=status, reason="order_cancelled" if status == "voided" else None,
                        hold_until=now + timedelta(days=14)))
    db.commit()
    page = client.get("/", query_string=launch_params()).text
    assert "Referrals" in page
    funnel = page[page.index("Link clicks"):page.index("Referred revenue") + 200]
    for shown in ("40", "25 unique", "10", "4", "40.0 %", "1 issued", "2 pending", "1 voided", "100.00 USD"):
        assert shown in funnel, shown


def test_the_admin_page_says_when_no_link_was_opened_yet(client, db, rt):
    from tests.auth.test_install import SHOP, launch_params

    make_shop_with_programs(db, rt.cipher, domain=SHOP)
    page = client.get("/", query_string=launch_params()).text
    assert "No referral link has been opened" in page and "Link clicks" not in page
