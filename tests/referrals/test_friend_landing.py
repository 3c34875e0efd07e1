"""``GET /r/{token}`` hands a friend code: 302 to the store's discount link, the same code for the same
browser, caps per link and per address recorded as blocks, never the Admin API (no client exists here:
the pools are written straight into the database, as the top-up job leaves them)."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import timedelta
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.codes import landing, referrals
from app.db import utcnow
from app.models import CodePool, PoolCode, Program, ReferralBlock, ReferralLink, Shop
from app.queues import job_status, pool_top_up_job_id
from app.referrals.routes import COOKIE
from tests.codes.test_pool_take import a_pool
from tests.helpers import make_shop_with_programs, program_of

SHOP = "demo.myshopify.com"
DISCOUNT = f"https://{SHOP}/discount/"


@pytest.fixture
def friend(rt, db) -> Program:
    """The shop's referral program on (reward and friend programs active), a pool of 60 codes."""
    shop = make_shop_with_programs(db, rt.cipher)
    program_of(db, shop, "referral_reward").active = True
    db.commit()  # (program_of expires what is not committed)
    program = program_of(db, shop, "referral_friend")
    program.active, program.pool_low_water = True, 5
    db.commit()
    a_pool(db, program, 60)
    return program


@pytest.fixture
def link(db, friend) -> ReferralLink:  # type: ignore[no-untyped-def]
    made, _ = referrals.create_link(db, friend.shop_id, 42)
    db.commit()
    return made


def code_of(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(DISCOUNT)
    return location[len(DISCOUNT):].split("?")[0]


def blocks(db, reason: str | None = None) -> list[ReferralBlock]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return list(db.scalars(select(ReferralBlock).where(*(
        [ReferralBlock.reason == reason] if reason else [])).order_by(ReferralBlock.id)))


def set_caps(db, friend: Program, **caps: int) -> None:  # type: ignore[no-untyped-def]
    landing.set_caps(db, db.get(Program, friend.id), caps)
    db.commit()


def test_an_active_link_redirects_to_the_discount_link_with_a_fresh_code(client, db, friend, link):
    opened = client.get(f"/r/{link.token}")
    code = code_of(opened)
    assert opened.headers["Location"] == DISCOUNT + quote(code)  # the home page: no redirect parameter
    assert opened.headers["Cache-Control"] == "no-store"
    db.expire_all()
    row = db.scalars(select(PoolCode).where(PoolCode.code == code)).one()
    assert (row.status, row.link_id, row.program_id) == ("handed_out", link.id, friend.id)
    assert db.get(ReferralLink, link.id).clicks == 1


def test_the_programs_redirect_path_goes_on_the_discount_link(client, db, friend, link):
    db.execute(update(Program).where(Program.id == friend.id).values(redirect_path="/collections/sale"))
    db.commit()
    opened = client.get(f"/r/{link.token}")
    assert opened.headers["Location"] == f"{DISCOUNT}{code_of(opened)}?redirect=%2Fcollections%2Fsale"


def test_the_visitor_cookie_is_signed_httponly_lax_and_only_for_the_landing(client, link):
    cookie = client.get(f"/r/{link.token}").headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/r/" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # development serves plain http://localhost


def test_the_visitor_cookie_is_secure_in_production(app_factory, db, friend, link):
    production = app_factory(env="production", app_url="https://oncecode.example.com")
    cookie = production.test_client().get(f"/r/{link.token}").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_the_same_browser_gets_the_same_code_and_another_browser_another(app, client, link):
    first = code_of(client.get(f"/r/{link.token}"))
    again = client.get(f"/r/{link.token}")
    assert code_of(again) == first and "Set-Cookie" not in again.headers  # the key is kept, not re-sent
    other = code_of(app.test_client().get(f"/r/{link.token}"))
    assert other != first


def test_a_forged_cookie_counts_as_none(app, client, link):
    client.set_cookie(COOKIE, "not-signed-by-us", path="/r/")
    assert code_of(client.get(f"/r/{link.token}"))
    victim = app.test_client()
    mine = code_of(victim.get(f"/r/{link.token}"))
    key = victim.get_cookie(COOKIE, path="/r/").value.split(".")[0]  # the payload without its signature
    client.set_cookie(COOKIE, key + ".forged", path="/r/")
    assert code_of(client.get(f"/r/{link.token}")) != mine


def test_an_expired_code_is_replaced_by_a_new_one_for_the_same_browser(client, db, link):
    first = code_of(client.get(f"/r/{link.token}"))
    db.execute(update(PoolCode).where(PoolCode.code == first).values(expires_at=utcnow() - timedelta(minutes=1)))
    db.commit()
    renewed = client.get(f"/r/{link.token}")
    second = code_of(renewed)
    assert second != first and COOKIE in renewed.headers["Set-Cookie"]  # a new key for the new code
    assert code_of(client.get(f"/r/{link.token}")) == second


def test_fifty_concurrent_landings_get_fifty_different_codes(app, db, friend, link):
    set_caps(db, friend, per_link_per_day=0)  # (the caps have their own tests)
    barrier = threading.Barrier(50)
    got: list[str] = []
    problems: list[BaseException] = []

    def visitor(n: int) -> None:
        browser = app.test_client()  # its own cookie jar, its own address
        barrier.wait()
        try:
            got.append(code_of(browser.get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": f"10.0.{n}.1"})))
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not problems, problems[:3]
    assert len(got) == 50 and len(set(got)) == 50


@pytest.mark.parametrize("off", ["referral_reward", "referral_friend"])
def test_a_program_that_is_off_gets_the_paused_page_with_the_store(client, db, friend, link, off):
    db.execute(update(Program).where(Program.shop_id == friend.shop_id, Program.kind == off).values(active=False))
    db.commit()
    page = client.get(f"/r/{link.token}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Referrals are paused" in text
    assert f'href="https://{SHOP}"' in text and "Set-Cookie" not in page.headers


def test_an_empty_pool_sends_the_visitor_on_and_queues_a_top_up(client, db, friend, link, rt):
    db.execute(update(PoolCode).where(PoolCode.program_id == friend.id).values(status="pending"))
    db.commit()
    page = client.get(f"/r/{link.token}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "No friend code just now" in text and f'href="https://{SHOP}"' in text
    assert job_status(rt.redis, pool_top_up_job_id(friend.shop_id, friend.id)) == "queued"


def test_a_store_that_uninstalled_and_a_retired_link_hand_out_nothing(client, db, friend, link):
    referrals.retire(db, link)
    db.commit()
    assert client.get(f"/r/{link.token}").status_code == 410
    shop = db.get(Shop, friend.shop_id)
    shop.uninstalled_at, shop.access_token = utcnow(), None
    fresh, _ = referrals.create_link(db, friend.shop_id, 43)
    db.commit()
    assert client.get(f"/r/{fresh.token}").status_code == 200
    db.expire_all()
    assert db.scalar(select(PoolCode).where(PoolCode.status == "handed_out")) is None


def test_the_per_link_daily_cap_blocks_new_codes_and_records_it(app, db, friend, link):
    set_caps(db, friend, per_link_per_day=2)
    browsers = [app.test_client() for _ in range(3)]
    first = code_of(browsers[0].get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": "10.0.0.1"}))
    code_of(browsers[1].get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": "10.0.0.2"}))
    capped = browsers[2].get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": "10.0.0.3"})
    text = capped.get_data(as_text=True)
    assert capped.status_code == 200 and "No friend code just now" in text and f'href="https://{SHOP}"' in text
    assert [(b.link_id, b.reason) for b in blocks(db)] == [(link.id, "link_daily_cap")]
    # A browser that has its code keeps getting it; codes older than a day no longer count.
    assert code_of(browsers[0].get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": "10.0.0.1"})) == first
    db.execute(update(PoolCode).where(PoolCode.link_id == link.id).values(handed_out_at=utcnow() - timedelta(hours=25)))
    db.commit()
    assert code_of(browsers[2].get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": "10.0.0.3"}))


def test_the_per_address_hourly_cap_counts_new_codes_only_and_records_blocks(app, db, friend, link):
    set_caps(db, friend, per_address_per_hour=2)
    other, _ = referrals.create_link(db, friend.shop_id, 43)
    db.commit()
    first = app.test_client()
    mine = code_of(first.get(f"/r/{link.token}"))
    for _ in range(3):  # reopening one's own link spends nothing
        assert code_of(first.get(f"/r/{link.token}")) == mine
    assert code_of(app.test_client().get(f"/r/{other.token}"))  # the budget is the address's, over all links
    capped = app.test_client().get(f"/r/{link.token}")
    assert capped.status_code == 200 and "No friend code just now" in capped.get_data(as_text=True)
    assert [b.reason for b in blocks(db)] == ["address_hourly_cap"]
    # Another address has its own budget.
    assert code_of(app.test_client().get(f"/r/{link.token}", environ_base={"REMOTE_ADDR": "10.9.9.9"}))


def test_the_address_is_the_one_trusted_proxies_report_never_a_header_the_client_wrote(app_factory, db, friend,
                                                                                          link):
    set_caps(db, friend, per_address_per_hour=1)
    direct = app_factory()  # no trusted proxy: X-Forwarded-For is the client's own words
    code_of(direct.test_client().get(f"/r/{link.token}", headers={"X-Forwarded-For": "1.1.1.1"}))
    assert direct.test_client().get(f"/r/{link.token}",
                                    headers={"X-Forwarded-For": "2.2.2.2"}).status_code == 200  # capped
    proxied = app_factory(trusted_proxy_hops=1)
    for address in ("3.3.3.3", "4.4.4.4"):
        code_of(proxied.test_client().get(f"/r/{link.token}", headers={"X-Forwarded-For": address}))
    assert proxied.test_client().get(f"/r/{link.token}", headers={"X-Forwarded-For": "3.3.3.3"}).status_code == 200


@pytest.mark.parametrize("changes, message", [
    ({"per_link_per_day": -1}, "per_link_per_day must be a whole number from 0 (no cap) to 100000, not -1"),
    ({"per_address_per_hour": "5"}, "per_address_per_hour must be a whole number from 0 (no cap) to 100000, not '5'"),
    ({"per_address_per_hour": True}, "per_address_per_hour must be a whole number"),
    ({"per_day": 3}, "unknown cap 'per_day' (known: per_link_per_day, per_address_per_hour)"),
])
def test_cap_settings_are_validated_like_the_pool_settings(db, friend, changes, message):
    from app.errors import BadRequest

    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        landing.set_caps(db, db.get(Program, friend.id), changes)


def test_caps_are_on_by_default_and_zero_turns_one_off(app, db, friend, link):
    assert landing.caps_json(db.get(Program, friend.id)) == {"per_link_per_day": 20, "per_address_per_hour": 5}
    set_caps(db, friend, per_address_per_hour=0)
    codes = {code_of(app.test_client().get(f"/r/{link.token}")) for _ in range(8)}
    assert len(codes) == 8 and not blocks(db)


def test_the_landing_answers_in_milliseconds(app_factory, db, friend, link):
    """200 landings, half new browsers (a code taken) and half a browser coming back: p50 and p99."""
    app = app_factory(public_rate_limit="100000 per minute")
    set_caps(db, friend, per_address_per_hour=0, per_link_per_day=0)
    a_pool(db, friend, 200)
    again = app.test_client()
    code_of(again.get(f"/r/{link.token}"))
    timings: dict[str, list[float]] = {"new": [], "again": []}
    for n in range(200):
        browser: FlaskClient = app.test_client() if n % 2 == 0 else again
        started = time.perf_counter()
        code_of(browser.get(f"/r/{link.token}"))
        timings["new" if n % 2 == 0 else "again"].append((time.perf_counter() - started) * 1000)
    for kind, ms in timings.items():
        ms.sort()
        print(f"landing ({kind}): p50 {statistics.median(ms):.1f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms")
    db.expire_all()
    assert db.scalar(select(CodePool.id).where(CodePool.program_id == friend.id)) is not None


def test_shop_redact_erases_the_blocks_and_the_codes_links(app, client, db, friend, link):
    from app import lifecycle

    set_caps(db, friend, per_link_per_day=1)
    code_of(client.get(f"/r/{link.token}"))
    assert app.test_client().get(f"/r/{link.token}").status_code == 200  # another browser: capped
    assert len(blocks(db)) == 1
    shop = db.get(Shop, friend.shop_id)
    shop.uninstalled_at, shop.access_token = utcnow(), None
    db.commit()
    assert lifecycle.redact_shop(db, SHOP, "event-1") == "redacted"
    db.commit()
    assert not blocks(db) and db.scalar(select(PoolCode.id)) is None
