"""The merchant's first minutes in the admin, in a real browser: the app opens inside devstore's admin
(a managed installation: the token is exchanged once), the first run turns welcome codes on, and the
next signup gets a code with the value chosen; the home page passes an accessibility check and loads
fast and steadily."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import FrameLocator, Page, expect
from sqlalchemy import select

from app.models import IssuedCode
from tests.browser.conftest import screenshot
from tests.conftest import API_KEY, run_worker
from tests.e2e.harness import SHOP, World, signup

SERIOUS = {"serious", "critical"}


def admin_url(world: World, path: str = "") -> str:
    return f"{world.store_url}/stores/{SHOP}/admin/apps/{API_KEY}{path}"


def app_frame(page: Page) -> FrameLocator:
    return page.frame_locator("iframe")


def serious_violations(page: Page) -> list[str]:
    frame = page.frames[-1]  # the app's document inside the admin
    results = Axe().run(frame)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in results.response["violations"]
            if v.get("impact") in SERIOUS]


def test_first_open_turns_welcome_codes_on_and_the_next_signup_gets_the_value_chosen(world: World, page: Page):
    world.control("POST", "/managed_install")
    page.goto(admin_url(world))
    app = app_frame(page)
    expect(app.get_by_role("heading", name="Home")).to_be_visible()
    assert world.control("GET", "/token_exchanges")["count"] == 1
    run_worker(world.rt.redis)  # the post-install set-up: programs, subscriptions

    page.goto(admin_url(world))
    expect(app.get_by_role("heading", name="Give every new customer a code of their own")).to_be_visible()
    value = app.get_by_label("Discount (% off)")
    value.fill("150")
    app.get_by_role("button", name="Turn on welcome codes").click()
    assert value.evaluate("field => field.validationMessage")  # the browser says why before sending it
    value.fill("20")
    app.get_by_role("button", name="Turn on welcome codes").click()
    expect(app.get_by_text("Welcome codes are on")).to_be_visible()
    assert world.control("GET", "/token_exchanges")["count"] == 1  # every page since: the token we hold

    signup(world, "ada@example.com")
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        [code] = session.scalars(select(IssuedCode)).all()
        assert code.terms["value"] == "20.00" and code.status == "attached"

    page.goto(admin_url(world))
    expect(app.get_by_role("heading", name="Home")).to_be_visible()
    assert serious_violations(page) == []
    screenshot(page, "admin-home")


def test_the_home_page_paints_fast_and_does_not_shift(world: World, page: Page):
    world.control("POST", "/managed_install")
    page.goto(admin_url(world))
    expect(app_frame(page).get_by_role("heading", name="Home")).to_be_visible()
    frame = page.frames[-1]
    vitals = frame.evaluate("""() => new Promise(resolve => {
        let lcp = 0, cls = 0;
        new PerformanceObserver(list => { for (const e of list.getEntries()) lcp = Math.max(lcp, e.startTime); })
            .observe({type: "largest-contentful-paint", buffered: true});
        new PerformanceObserver(list => { for (const e of list.getEntries()) if (!e.hadRecentInput) cls += e.value; })
            .observe({type: "layout-shift", buffered: true});
        setTimeout(() => resolve({lcp, cls}), 500);
    })""")
    assert vitals["lcp"] < 1000, vitals  # Largest Contentful Paint under 1 s
    assert vitals["cls"] < 0.1, vitals  # Cumulative Layout Shift under 0.1
