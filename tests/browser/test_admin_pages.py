"""The Codes, Programs and Home pages in a real browser, inside devstore's admin: a code searched by its
start, opened, revoked through its in-place confirmation, and the list downloaded as CSV (its rows are
the database's); a program's value changed on its page (a bad value named next to its field first), and
the next signup's code carries the new value; the home page's figures equal a data set built on known
days, and its referral funnel shows a referral loop run on devstore. Every page passes axe-core with no
serious or critical violation and is screenshotted at desktop width and 360 px."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from app.admin.codes import CSV_COLUMNS
from app.codes import reconciliation
from app.codes.metrics import time_zone_of
from app.models import IssuedCode, PoolCode, Program, Referral, ReferralClickHour, Shop
from tests.browser.conftest import screenshot
from tests.browser.test_admin import SERIOUS, admin_url, app_frame
from tests.browser.test_admin_referrals_health import installed
from tests.conftest import run_worker
from tests.e2e.harness import World, set_program, signup
from tests.e2e.test_referral_links import friend_pool, link_of
from tests.e2e.test_referral_links import installed as installed_with_referrals
from tests.e2e.test_referral_loop import friend_checkout
from tests.helpers import issued_code, order_payload


def checked(page: Page, name: str) -> None:
    """The page's screenshots saved, and it passes axe-core (no serious or critical violation) at desktop
    width and at 360 px, where tables scroll sideways and forms stack."""
    screenshot(page, name)
    size = page.viewport_size
    found = violations(page, "desktop")
    page.set_viewport_size({"width": 360, "height": 800})
    found += violations(page, "360 px")
    page.set_viewport_size(size)
    assert found == [], name


def violations(page: Page, width: str) -> list[str]:
    results = Axe().run(page.frames[-1])  # the app's document inside the admin
    return [f"{width}: {v['id']}: {v['help']} at {[node['target'] for node in v['nodes']]}"
            for v in results.response["violations"] if v.get("impact") in SERIOUS]


def test_search_a_code_open_revoke_it_and_download_the_list_as_csv(world: World, page: Page):
    shop_id = installed(world, page)
    set_program(world, value=15)  # the welcome program on
    for n in range(3):
        signup(world, f"customer{n}@example.com")
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        issued = {row.code: row.status for row in session.scalars(
            select(IssuedCode).where(IssuedCode.shop_id == shop_id))}
    assert len(issued) == 3 and set(issued.values()) == {"attached"}
    wanted = sorted(issued)[1]
    start = wanted[:-3].lower()  # its start, in any case
    matching = sorted(code for code in issued if code.startswith(start.upper()))

    app = app_frame(page)
    page.goto(admin_url(world, "/admin/codes"))
    expect(app.get_by_role("heading", name="Codes", exact=True)).to_be_visible()
    checked(page, "admin-codes")

    app.get_by_label("Code", exact=True).fill(start)
    app.get_by_role("button", name="Search").click()
    expect(app.get_by_role("link", name="Clear filters")).to_be_visible()
    expect(app.locator("tbody tr")).to_have_count(len(matching))
    checked(page, "admin-codes-search")

    app.get_by_role("link", name=wanted, exact=True).click()
    expect(app.get_by_role("heading", name="Timeline")).to_be_visible()
    expect(app.locator("h1")).to_contain_text(wanted)
    checked(page, "admin-code")

    app.get_by_text("Revoke", exact=True).click()  # the in-place confirmation opens
    app.get_by_role("button", name=f"Yes, revoke {wanted}").click()
    expect(app.get_by_text("Code revoked. It stops working on your store in a moment.")).to_be_visible()
    expect(app.locator("h1 .badge")).to_have_text("Revoked")
    expect(app.get_by_text("Revoke", exact=True)).to_have_count(0)  # nothing left to revoke
    with world.rt.db.session_scope() as session:
        assert session.scalar(select(IssuedCode.status).where(IssuedCode.code == wanted)) == "revoked"
    checked(page, "admin-code-revoked")

    app.get_by_role("link", name="← Codes").click()
    expect(app.get_by_role("link", name="Download CSV")).to_be_visible()
    with page.expect_download() as download:
        app.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename.startswith("oncecode-codes-demo-")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    with world.rt.db.session_scope() as session:
        stored = {(row.code, row.program.name, row.status, str(row.customer.shopify_customer_id))
                  for row in session.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop_id))}
    assert {(r[0], r[1], r[2], r[3]) for r in rows[1:]} == stored and len(rows) == 4
    assert dict((r[0], r[2]) for r in rows[1:])[wanted] == "revoked"

    app.get_by_role("link", name="Issue a code").click()
    expect(app.get_by_role("heading", name="Issue a code")).to_be_visible()
    checked(page, "admin-code-new")


def test_a_programs_new_value_is_the_next_signups_and_a_bad_value_is_named_by_its_field(world: World, page: Page):
    shop_id = installed(world, page)
    app = app_frame(page)
    page.goto(admin_url(world, "/admin/programs"))
    expect(app.get_by_role("heading", name="Programs")).to_be_visible()
    checked(page, "admin-programs")

    with world.rt.db.session_scope() as session:
        welcome = session.scalars(select(Program).where(Program.shop_id == shop_id, Program.kind == "welcome")).one()
        name = welcome.name
    app.get_by_role("link", name=f"Edit {name}").click()
    expect(app.get_by_role("heading", name=name)).to_be_visible()
    checked(page, "admin-program")

    value = app.get_by_label("Value", exact=True)
    value.fill("ten")  # a text field: the browser sends it, the domain refuses it
    app.get_by_label("Program is on").check()
    app.get_by_role("button", name="Save").click()
    expect(app.get_by_role("alert")).to_contain_text("kept this program from being saved")
    error = app.locator("#f-value-err")
    expect(error).to_be_visible()
    expect(error).to_have_text("value must be a number such as 10 or 12.50, not 'ten'")  # the domain's words
    expect(value).to_have_attribute("aria-invalid", "true")
    assert "f-value-err" in (value.get_attribute("aria-describedby") or "")
    expect(value).to_have_value("ten")  # the form as typed, for the merchant to correct
    checked(page, "admin-program-error")
    with world.rt.db.session_scope() as session:
        assert session.get(Program, welcome.id).active is False  # nothing saved

    value.fill("35")
    app.get_by_role("button", name="Save").click()
    expect(app.get_by_text("Welcome program saved.")).to_be_visible()
    expect(app.get_by_label("Program is on")).to_be_checked()

    signup(world, "grace@example.com")
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        [code] = session.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop_id)).all()
        assert (code.terms["value"], code.status) == ("35.00", "attached")
        reward = session.scalars(select(Program).where(Program.shop_id == shop_id,
                                                       Program.kind == "referral_reward")).one().name

    app.get_by_role("link", name="← Programs").click()  # the referral reward program: its settings too
    app.get_by_role("link", name=f"Edit {reward}").click()
    expect(app.get_by_role("heading", name="Referral settings")).to_be_visible()
    checked(page, "admin-program-referral-reward")


def test_home_shows_the_figures_of_known_days_and_the_referral_funnel_after_a_loop(world: World, page: Page):
    installed_with_referrals(world)  # installed, set up, the referral reward program on
    friend_pool(world, size=6, low_water=2)
    advocate = signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    friend_checkout(world, link_of(world, advocate["id"]).token, None, email="bob@example.com")
    world.wait_delivered("orders/paid")
    run_worker(world.rt.redis)

    # Known days, well before the loop (today): issued, redeemed, revenue and discount by day.
    shop = world.shop()
    zone = ZoneInfo(time_zone_of(shop))
    today = datetime.now(zone).date()
    days = [today - timedelta(days=12), today - timedelta(days=11), today - timedelta(days=10)]
    plan = {days[0]: [("50.00", "5.00"), None, None], days[1]: [("80.00", "8.00"), None], days[2]: [None]}
    with world.rt.db.session_scope() as session:
        shop = session.get(Shop, shop.id)
        order_id = 7000
        for day, codes in plan.items():
            noon = datetime.combine(day, time(12), zone)
            for n, sale in enumerate(codes):
                row = issued_code(session, shop, f"KNOWN-{day:%m%d}-{n}", issued_at=noon)
                if sale:
                    order_id += 1
                    total, discount = sale
                    facts = reconciliation.PaidOrderFacts.from_webhook(order_payload(
                        order_id, [(row.code, discount)], total=total,
                        processed_at=(noon + timedelta(hours=2)).isoformat(), customer_id=None))
                    reconciliation.reconcile(session, shop.id, facts, "webhook")
                    session.commit()
        clicks = session.scalar(select(func.sum(ReferralClickHour.clicks)).where(ReferralClickHour.shop_id == shop.id))
        handed = session.scalar(select(func.count()).select_from(PoolCode).where(
            PoolCode.shop_id == shop.id, PoolCode.status.in_(("handed_out", "redeemed"))))
        referred = session.scalar(select(func.count()).select_from(Referral).where(Referral.shop_id == shop.id))
    assert (clicks, handed, referred) == (1, 1, 1)

    app = app_frame(page)
    page.goto(admin_url(world, "/admin/"))
    expect(app.get_by_role("heading", name="Home")).to_be_visible()
    app.get_by_label("From", exact=True).fill(days[0].isoformat())
    app.get_by_label("To", exact=True).fill(days[2].isoformat())
    app.get_by_role("button", name="Apply dates").click()
    expect(app.get_by_role("heading", name="Chosen range")).to_be_visible()
    tiles = app.locator(".stat")
    stats = {tiles.nth(i).locator(".label").inner_text(): tiles.nth(i).locator(".value").inner_text()
             for i in range(tiles.count())}
    assert stats == {"Codes issued": "6", "Redeemed": "2", "Redemption rate": "33.3 %",
                     "Revenue with codes": "130.00 USD", "Discount given": "13.00 USD",
                     "Average order": "65.00 USD"}, stats
    app.get_by_text("The figures as a table").click()
    for day, issued, redeemed in ((days[0], "3", "1"), (days[1], "2", "1"), (days[2], "1", "0")):
        row = app.locator("tr", has=app.locator(f"th:text-is('{day.isoformat()}')"))
        expect(row.locator("td")).to_have_text([issued, redeemed, "50.00 USD" if day == days[0] else
                                                "80.00 USD" if day == days[1] else "—"])
    expect(app.get_by_text("No referral link was opened in this range.")).to_be_visible()  # the loop is today
    checked(page, "admin-home-range")

    page.goto(admin_url(world, "/admin/") + "?range=7d")  # the preset, through the admin's URL
    funnel = app.locator("ol.funnel li")
    expect(funnel).to_have_count(4)
    expect(funnel.nth(0)).to_contain_text("1 link clicks")
    expect(funnel.nth(1)).to_contain_text("1 friend codes handed out")
    expect(funnel.nth(2)).to_contain_text("1 friend orders")
    expect(funnel.nth(3)).to_contain_text("0 rewards issued · 1 held")
    checked(page, "admin-home-referrals")

    for path, heading, name in (("/admin/referrals", "Referrals", "admin-referrals-data"),
                                ("/admin/referrals/links", "Referrals", "admin-referral-links-data"),
                                ("/admin/referrals/pool", "Referrals", "admin-referral-pool-data"),
                                ("/admin/health", "Health", "admin-health-data")):
        page.goto(admin_url(world, path))
        expect(app.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        checked(page, name)
