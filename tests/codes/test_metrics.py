"""Metrics on a constructed data set whose every figure can be checked by hand (see ``DATA``).

November 2026 (UTC days). Welcome codes W1–W7, referred-friend codes F1–F2:

| code | issued           | status / order (paid)               | total  | discount |
|------|------------------|-------------------------------------|--------|----------|
| W1   | 11-01 10:00      | order 101, 11-02 10:00 (1 day)       | 100.00 | 10.00    |
| W2   | 11-01 12:00      | order 102, 11-04 12:00 (3 days)      |  50.00 |  5.00    |
| W3   | 11-02 00:00      | attached, unused                     |        |          |
| W4   | 11-03 00:00      | failed (never reached the store)     |        |          |
| F1   | 11-05 00:00      | order 103, 11-05 06:00 (6 h)         |  80.00 |  8.00    |
| W5   | 10-20 00:00      | order 104, 11-10 00:00 (21 days)     |  40.00 |  4.00    |
| W6   | 11-20 00:00      | order 105, 12-01 00:00 (after range) |  60.00 |  6.00    |
| W7   | 11-06 00:00      | order 106, 11-07 00:00 (1 day)       | 120.00 |  6.00    |
| F2   | 11-06 12:00      | order 106 too (12 h)                 |        |  9.00    |

Orders without our codes: 201 (11-03, 30.00 USD), 202 (11-15, 70.00 USD), 203 (11-16, 99.00 CAD).

Totals: issued 7 (not W4, not W5); of them redeemed 6 (all but W3) → 6/7 = 0.8571; redeemed in
November 6 (W1 W2 F1 W5 W7 F2); their times 6 h, 12 h, 1 d, 1 d, 3 d, 21 d → median 1 day; orders
with codes 101 102 103 104 106 → 5, revenue 390.00, discount 42.00, average 78.00; without: 50.00 USD
(2 orders) and 99.00 CAD (1).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, update

from app.codes import tallies
from app.codes.metrics import Period, shop_metrics
from app.codes.reconciliation import PaidOrderFacts, reconcile
from app.errors import BadRequest
from app.models import IssuedCode, Shop
from tests.helpers import issued_code, make_shop_with_programs, order_payload, program_of, session_token

NOVEMBER = Period(date(2026, 11, 1), date(2026, 11, 30))
DAY = 86400.0

CODES = [  # code, kind, issued, status
    ("W1", "welcome", "2026-11-01T10:00", "attached"), ("W2", "welcome", "2026-11-01T12:00", "attached"),
    ("W3", "welcome", "2026-11-02T00:00", "attached"), ("W4", "welcome", "2026-11-03T00:00", "failed"),
    ("F1", "referral_friend", "2026-11-05T00:00", "attached"), ("W5", "welcome", "2026-10-20T00:00", "attached"),
    ("W6", "welcome", "2026-11-20T00:00", "attached"), ("W7", "welcome", "2026-11-06T00:00", "attached"),
    ("F2", "referral_friend", "2026-11-06T12:00", "attached"),
]
ORDERS = [  # order id, codes with their discounts, total, paid, currency
    (101, [("W1", "10.00")], "100.00", "2026-11-02T10:00:00Z", "USD"),
    (102, [("w2", "5.00")], "50.00", "2026-11-04T12:00:00Z", "USD"),
    (103, [("F1", "8.00")], "80.00", "2026-11-05T06:00:00Z", "USD"),
    (104, [("W5", "4.00")], "40.00", "2026-11-10T00:00:00Z", "USD"),
    (105, [("W6", "6.00")], "60.00", "2026-12-01T00:00:00Z", "USD"),
    (106, [("W7", "6.00"), ("F2", "9.00"), ("SUMMER", "1.00")], "120.00", "2026-11-07T00:00:00Z", "USD"),
    (201, [], "30.00", "2026-11-03T09:00:00Z", "USD"),
    (202, [], "70.00", "2026-11-15T09:00:00Z", "USD"),
    (203, [], "99.00", "2026-11-16T09:00:00Z", "CAD"),
]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def build(session, shop) -> None:  # type: ignore[no-untyped-def]
    for code, kind, issued, status in CODES:
        issued_code(session, shop, code, kind=kind, status=status, issued_at=at(issued))
    for order_id, codes, total, paid, currency in ORDERS:
        reconcile(session, shop.id, PaidOrderFacts.from_webhook(
            order_payload(order_id, codes, total=total, processed_at=paid, currency=currency)), "webhook")
    session.commit()


def built(db, rt, source: str):  # type: ignore[no-untyped-def]
    """The data set, to be read from ``source``: the codes (no tallies yet), tallies rebuilt from the
    codes, the changes the triggers recorded while the data was written (not folded yet), or those
    changes folded into the days."""
    shop = make_shop_with_programs(db, rt.cipher)
    if source in ("triggered", "folded"):
        assert tallies.fold_changes(rt.db)["rebuilt"] == 1  # the shop's tallies exist (empty) before the data
    build(db, shop)
    if source in ("rebuilt", "folded"):
        tallies.fold_changes(rt.db)
    assert reads_tallies(db, shop) == (source != "codes")
    return shop


@pytest.fixture(params=["codes", "rebuilt", "triggered"])
def every_way(db, rt, request):  # type: ignore[no-untyped-def]
    """The data set read each way: every figure must come out the same from each (folded: ``shop``, which
    the tests of the API and the CLI read)."""
    return built(db, rt, request.param)


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    """The data set as a running app has it: tallies folded as it was written."""
    return built(db, rt, "folded")


def reads_tallies(db, shop) -> bool:  # type: ignore[no-untyped-def]
    """Whether the shop's metrics (in UTC) come from its tallies rather than its codes."""
    db.commit()
    return db.scalar(select(Shop.tally_zone).where(Shop.id == shop.id)) == "UTC"


def test_totals_over_the_range_are_exact(db, every_way):
    totals = shop_metrics(db, every_way.id, NOVEMBER)["totals"]
    assert totals == {
        "codes_issued": 7, "codes_redeemed": 6, "redemption_rate": 0.8571, "redeemed_of_issued": 6,
        "median_seconds_to_redemption": DAY, "orders_with_codes": 5, "revenue": {"USD": "390.00"},
        "discount_given": {"USD": "42.00"}, "codes_with_unknown_discount": 0,
        "average_order_value": {"with_codes": {"USD": "78.00"}, "without_codes": {"CAD": "99.00", "USD": "50.00"}},
        "orders_without_codes": 3, "anomalies": 0,
    }


def test_each_program_has_its_own_figures(db, every_way):
    by_kind = {p["kind"]: p for p in shop_metrics(db, every_way.id, NOVEMBER)["programs"]}
    welcome, friend, reward = by_kind["welcome"], by_kind["referral_friend"], by_kind["referral_reward"]
    assert (welcome["codes_issued"], welcome["redeemed_of_issued"], welcome["redemption_rate"]) == (5, 4, 0.8)
    assert (welcome["codes_redeemed"], welcome["median_seconds_to_redemption"]) == (4, 2 * DAY)
    assert (welcome["orders_with_codes"], welcome["revenue"], welcome["discount_given"]) == (
        4, {"USD": "310.00"}, {"USD": "25.00"})
    assert (friend["codes_issued"], friend["redemption_rate"], friend["median_seconds_to_redemption"]) == (
        2, 1.0, 9 * 3600.0)
    assert (friend["orders_with_codes"], friend["revenue"]) == (2, {"USD": "200.00"})
    assert (reward["codes_issued"], reward["redemption_rate"], reward["median_seconds_to_redemption"]) == (
        0, None, None)


def test_one_programs_report_averages_its_own_orders(db, every_way):
    welcome = program_of(db, every_way, "welcome")
    report = shop_metrics(db, every_way.id, NOVEMBER, program_id=welcome.id)
    totals = report["totals"]
    assert (totals["codes_issued"], totals["codes_redeemed"], totals["revenue"]) == (5, 4, {"USD": "310.00"})
    assert totals["average_order_value"] == {"with_codes": {"USD": "77.50"},
                                             "without_codes": {"CAD": "99.00", "USD": "50.00"}}
    assert [p["kind"] for p in report["programs"]] == ["welcome"]


def test_the_daily_series_covers_every_day_and_counts_an_order_once(db, every_way):
    daily = {d["date"]: d for d in shop_metrics(db, every_way.id, NOVEMBER)["daily"]}
    assert len(daily) == 30 and min(daily) == "2026-11-01" and max(daily) == "2026-11-30"
    assert (daily["2026-11-01"]["codes_issued"], daily["2026-11-01"]["codes_redeemed"]) == (2, 0)
    assert daily["2026-11-01"]["redemption_rate"] == 1.0  # both of that day's codes were redeemed later
    assert (daily["2026-11-02"]["codes_issued"], daily["2026-11-02"]["codes_redeemed"]) == (1, 1)
    assert daily["2026-11-03"]["codes_issued"] == 0  # W4 failed
    # Order 106 used two of our codes: two redemptions, one order, its total once.
    assert (daily["2026-11-07"]["codes_redeemed"], daily["2026-11-07"]["orders_with_codes"]) == (2, 1)
    assert (daily["2026-11-07"]["revenue"], daily["2026-11-07"]["discount_given"]) == (
        {"USD": "120.00"}, {"USD": "15.00"})
    assert daily["2026-11-30"] == {**daily["2026-11-30"], "codes_issued": 0, "revenue": {}, "redemption_rate": None}
    assert sum(d["codes_issued"] for d in daily.values()) == 7
    assert sum(d["orders_with_codes"] for d in daily.values()) == 5


def test_a_range_outside_the_data_is_all_zeros(db, every_way):
    report = shop_metrics(db, every_way.id, Period(date(2025, 1, 1), date(2025, 1, 31)), daily=False)
    assert report["totals"]["codes_issued"] == 0 and report["totals"]["redemption_rate"] is None
    assert report["totals"]["revenue"] == {} and "daily" not in report


def test_metrics_are_the_shops_own(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    assert shop_metrics(db, other.id, NOVEMBER)["totals"]["codes_issued"] == 0


def test_unknown_discounts_are_counted_not_guessed(db, every_way):
    db.execute(update(IssuedCode).where(IssuedCode.shop_id == every_way.id, IssuedCode.code == "W1")
               .values(discount_amount=None))
    db.commit()
    totals = shop_metrics(db, every_way.id, NOVEMBER)["totals"]
    assert totals["discount_given"] == {"USD": "32.00"} and totals["codes_with_unknown_discount"] == 1


def test_metrics_are_the_same_on_sqlite(db, every_way, sqlite_app):
    rt = sqlite_app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        lite = make_shop_with_programs(session, rt.cipher)
        build(session, lite)
        on_sqlite = shop_metrics(session, lite.id, NOVEMBER)
    on_postgres = shop_metrics(db, every_way.id, NOVEMBER)
    strip = lambda report: {**report, "programs": [{**p, "program_id": None} for p in report["programs"]]}  # noqa: E731
    assert strip(on_sqlite) == strip(on_postgres)


@pytest.mark.parametrize(("first", "last", "message"), [
    ("2026-11-31", None, "from must be a date"),
    ("2026-12-01", "2026-11-01", "must not be after"),
    ("2025-01-01", "2026-11-30", "at most 366 days"),
])
def test_bad_ranges_are_refused_with_the_reason(first, last, message):
    with pytest.raises(BadRequest, match=message):
        Period.parse(first, last)


def test_the_default_range_is_the_last_30_days():
    assert Period.parse(None, None, today=date(2026, 12, 2)) == Period(date(2026, 11, 3), date(2026, 12, 2))


# --- the API and the CLI ------------------------------------------------------------------------

def auth(shop) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {session_token(shop.domain)}"}


def test_the_api_serves_the_metrics(client, shop):
    answer = client.get("/api/metrics?from=2026-11-01&to=2026-11-30", headers=auth(shop))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["totals"]["revenue"] == {"USD": "390.00"} and len(body["daily"]) == 30
    brief = client.get("/api/metrics?from=2026-11-01&to=2026-11-30&daily=0", headers=auth(shop)).get_json()
    assert "daily" not in brief and brief["totals"] == body["totals"]


@pytest.mark.parametrize(("query", "message"), [
    ("from=yesterday", "from must be a date"),
    ("from=2026-11-30&to=2026-11-01", "must not be after"),
    ("program_id=999999", "no program 999999"),
    ("program_id=abc", "program_id must be an id"),
    ("program_id=9223372036854775808", "program_id must be an id"),  # 2^63: past PostgreSQL's bigint
    ("program_id=%C2%B2", "program_id must be an id"),  # "²": isdigit() says yes, int() says no
    ("daily=yes", "daily must be 0 or 1"),
    # Years that overflow datetime in a time zone, or that no store has orders in.
    ("from=0001-01-01", "from must be a date from 2000-01-01 to 2100-12-31"),
    ("to=9999-12-31", "to must be a date from 2000-01-01 to 2100-12-31"),
    ("from=1999-12-31&to=2000-01-01", "from must be a date from 2000-01-01"),
    ("from=2100-12-31&to=2101-01-01", "to must be a date from 2000-01-01"),
    # Forms date.fromisoformat accepts but the API does not promise.
    ("from=20261130", "from must be a date like 2026-11-30"),
    ("from=2026-W48-1", "from must be a date like 2026-11-30"),
    ("to=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-11-30", "to must be a date like"),  # full-width digits
    ("from=2026-11-30%00", "from must be a date like"),
])
def test_the_api_refuses_bad_parameters_with_400(client, shop, query, message):
    answer = client.get(f"/api/metrics?{query}", headers=auth(shop))
    assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_the_far_ends_of_the_allowed_years_are_answered(client, shop):
    for query in ("from=2000-01-01&to=2000-01-31", "from=2100-12-01&to=2100-12-31", "to=2000-01-01"):
        assert client.get(f"/api/metrics?{query}&daily=0", headers=auth(shop)).status_code == 200, query


def test_the_api_needs_a_session_token(client, shop):
    assert client.get("/api/metrics").status_code == 401


def test_the_cli_prints_a_table(runner, shop):
    result = runner.invoke(args=["metrics", shop.domain, "--from", "2026-11-01", "--to", "2026-11-30"])
    assert result.exit_code == 0, result.output
    assert "85.7 % (6 of the issued)" in result.output and "390.00 USD" in result.output
    assert "99.00 CAD, 50.00 USD (3 orders)" in result.output
    assert "1.0 days" not in result.output and "24.0 h" in result.output  # the median: one day
    assert "Referred friend" in result.output
    daily = runner.invoke(args=["metrics", shop.domain, "--from", "2026-11-01", "--to", "2026-11-30", "--daily",
                                "--program", "welcome"])
    assert daily.exit_code == 0 and "2026-11-07" in daily.output and "Referred friend" not in daily.output


def test_the_cli_prints_every_amount_with_its_currency(runner, db, rt, shop):
    result = runner.invoke(args=["metrics", shop.domain, "--from", "2026-11-01", "--to", "2026-11-30", "--daily"])
    assert result.exit_code == 0, result.output
    reward = next(line for line in result.output.splitlines() if line.startswith("Referral reward"))
    assert reward.split()[-4:] == ["0.00", "USD", "0.00", "USD"]  # a program without orders
    quiet_day = next(line for line in result.output.splitlines() if line.startswith("2026-11-30"))
    assert quiet_day.split()[-4:] == ["0.00", "USD", "0.00", "USD"]
    amounts = re.findall(r"\b\d+\.\d\d\b(?! [A-Z]{3}\b)", result.output)
    assert amounts == []  # no amount without its currency code

    fresh = make_shop_with_programs(db, rt.cipher, domain="fresh.myshopify.com")
    before_any_order = runner.invoke(args=["metrics", fresh.domain])
    assert before_any_order.exit_code == 0
    assert [line.split()[-1] for line in before_any_order.output.splitlines()
            if line.startswith("revenue of those orders")] == ["-"]


@pytest.mark.parametrize("on_sqlite", [False, True])
def test_a_code_used_within_its_issue_second_is_redeemed_after_zero_seconds_not_before(db, rt, sqlite_app, on_sqlite):
    # Shopify's time paid has whole seconds; the issue time has microseconds.
    if on_sqlite:
        rt = sqlite_app.extensions["oncecode"]
        db = rt.db.sessions()
    shop = make_shop_with_programs(db, rt.cipher, domain="quick.myshopify.com")
    issued_code(db, shop, "QUICK1", issued_at=datetime(2026, 11, 10, 12, 0, 0, 700000, tzinfo=UTC))
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(
        order_payload(301, [("QUICK1", "1.00")], total="20.00", processed_at="2026-11-10T12:00:00Z")), "webhook")
    db.commit()
    report = shop_metrics(db, shop.id, NOVEMBER)
    assert report["totals"]["median_seconds_to_redemption"] == 0.0
    assert report["programs"][0]["median_seconds_to_redemption"] == 0.0
    if on_sqlite:
        db.close()


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2026-12-01", "--to", "2026-11-01"], "Error: from (2026-12-01) must not be after to (2026-11-01)"),
    (["--from", "2025-01-01", "--to", "2026-11-30"], "Error: a range covers at most 366 days"),
    (["--from", "0001-01-01"], "Error: --from must be a date from 2000-01-01 to 2100-12-31, not 0001-01-01"),
    (["--to", "9999-12-31"], "Error: --to must be a date from 2000-01-01 to 2100-12-31, not 9999-12-31"),
    (["--to", "2026-W48-1"], "Error: --to must be a date like 2026-11-30, not '2026-W48-1'"),
    (["--program", "99999999999999999999"], "Error: a program id must be an id: a whole number from 1 to"),
])
def test_the_cli_explains_a_bad_range_as_a_usage_error(runner, shop, args, message):
    result = runner.invoke(args=["metrics", shop.domain, *args])
    assert result.exit_code == 2 and message in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


# --- the store's days ---------------------------------------------------------------------------

def test_a_day_of_a_store_in_new_york_is_its_own_even_across_the_dst_change():
    # DST ends on 1 November 2026 in New York: that day has 25 hours, from 04:00 to 05:00 UTC the next day.
    day = Period(date(2026, 11, 1), date(2026, 11, 1), "America/New_York")
    assert (day.start, day.end) == (at("2026-11-01T04:00"), at("2026-11-02T05:00"))


def new_york_shop(session, cipher):  # type: ignore[no-untyped-def]
    shop = make_shop_with_programs(session, cipher, domain="ny.myshopify.com")
    shop.iana_timezone = "America/New_York"
    session.commit()
    # 21:30 on 1 November in New York is 02:30 UTC on the 2nd; 23:30 on 31 October is 03:30 UTC on 1 November.
    issued_code(session, shop, "NY1", issued_at=at("2026-11-02T02:30"))
    issued_code(session, shop, "NY2", issued_at=at("2026-11-01T03:30"))
    reconcile(session, shop.id, PaidOrderFacts.from_webhook(order_payload(
        901, [("NY1", "3.00")], total="30.00", processed_at="2026-11-02T04:30:00Z")), "webhook")  # 23:30 local
    session.commit()
    return shop


def test_metrics_follow_the_stores_time_zone(db, rt):
    shop = new_york_shop(db, rt.cipher)
    period = Period.of_shop(shop, "2026-11-01", "2026-11-01")
    assert period.zone == "America/New_York"
    report = shop_metrics(db, shop.id, period)
    assert report["time_zone"] == "America/New_York"
    # NY2 was issued on 31 October there, though it was already 1 November in UTC.
    assert (report["totals"]["codes_issued"], report["totals"]["codes_redeemed"]) == (1, 1)
    assert report["daily"] == [{**report["daily"][0], "date": "2026-11-01", "codes_issued": 1,
                                "codes_redeemed": 1, "revenue": {"USD": "30.00"}}]
    in_utc = shop_metrics(db, shop.id, Period(date(2026, 11, 1), date(2026, 11, 1)))
    assert (in_utc["totals"]["codes_issued"], in_utc["totals"]["codes_redeemed"]) == (1, 0)


def test_the_stores_days_are_the_same_on_sqlite(db, rt, sqlite_app):
    lite_rt = sqlite_app.extensions["oncecode"]
    with lite_rt.db.session_scope() as session:
        lite = new_york_shop(session, lite_rt.cipher)
        on_sqlite = shop_metrics(session, lite.id, Period.of_shop(lite, "2026-10-31", "2026-11-02"))
    shop = new_york_shop(db, rt.cipher)
    on_postgres = shop_metrics(db, shop.id, Period.of_shop(shop, "2026-10-31", "2026-11-02"))
    assert [d["codes_issued"] for d in on_sqlite["daily"]] == [1, 1, 0]
    assert on_sqlite["daily"] == on_postgres["daily"] and on_sqlite["totals"] == on_postgres["totals"]


@pytest.mark.parametrize(("stored", "zone"), [(None, "UTC"), ("Mars/Olympus_Mons", "UTC"),
                                              ("Asia/Kolkata", "Asia/Kolkata")])
def test_an_unknown_or_unread_time_zone_means_utc(db, rt, stored, zone):
    shop = make_shop_with_programs(db, rt.cipher)
    shop.iana_timezone = stored
    assert Period.of_shop(shop, "2026-11-01", "2026-11-30").zone == zone
