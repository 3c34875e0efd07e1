"""The Referrals and Health pages in a real browser, inside devstore's admin: the tabs and the actions
work by mouse and by keyboard (a link retired through its in-place confirmation, a failed code retried,
"Reconcile now"), every view passes axe-core with no serious or critical violation, and each is
screenshotted at desktop width and 360 px."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.codes import referrals
from app.models import IssuedCode, ReferralLink
from tests.browser.conftest import screenshot
from tests.browser.test_admin import admin_url, app_frame, serious_violations
from tests.conftest import run_worker
from tests.e2e.harness import World
from tests.helpers import issued_code


def installed(world: World, page: Page) -> int:
    """A managed installation opened once and set up; the shop's id."""
    world.control("POST", "/managed_install")
    page.goto(admin_url(world))
    expect(app_frame(page).get_by_role("heading", name="Home")).to_be_visible()
    run_worker(world.rt.redis)  # the post-install set-up: programs, subscriptions
    return world.shop().id


def test_referrals_tabs_and_retiring_a_link(world: World, page: Page):
    shop_id = installed(world, page)
    with world.rt.db.session_scope() as session:
        link, _ = referrals.create_link(session, shop_id, 4242)
        link_id = link.id
    app = app_frame(page)
    page.goto(admin_url(world, "/admin/referrals"))
    expect(app.get_by_role("heading", name="No referral yet")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "admin-referrals")

    app.get_by_role("link", name="Advocates' links").click()
    expect(app.get_by_role("heading", name="Give a customer their link")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "admin-referral-links")
    app.get_by_text("Retire", exact=True).focus()  # by keyboard: open the confirmation, then confirm
    page.keyboard.press("Enter")
    confirm = app.get_by_role("button", name="Yes, retire this link")
    expect(confirm).to_be_visible()
    confirm.focus()
    page.keyboard.press("Enter")
    expect(app.get_by_text("Link retired.")).to_be_visible()
    with world.rt.db.session_scope() as session:
        assert session.get(ReferralLink, link_id).status == "retired"

    app.get_by_role("link", name="Friend codes").click()
    expect(app.get_by_role("heading", name="Caps that stopped a friend code")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "admin-referral-pool")


def test_health_retries_a_failed_code_and_reconciles_now(world: World, page: Page):
    shop_id = installed(world, page)
    with world.rt.db.session_scope() as session:
        from app.models import Shop

        row = issued_code(session, session.get(Shop, shop_id), "WELCOME-BROKEN", status="failed")
        row.last_error = "the store refused the code: Code must be unique"
        code_id = row.id
    app = app_frame(page)
    page.goto(admin_url(world, "/admin/health"))
    expect(app.get_by_text("the store refused the code: Code must be unique")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "admin-health")

    app.get_by_role("button", name="Retry WELCOME-BROKEN").click()
    expect(app.get_by_text("The code is on its way to your store again.")).to_be_visible()
    with world.rt.db.session_scope() as session:
        assert session.scalar(select(IssuedCode.status).where(IssuedCode.id == code_id)) in ("reserved", "created")
    app.get_by_role("button", name="Reconcile now").click()
    expect(app.get_by_text("Checking your paid orders now")).to_be_visible()
