"""``GET /r/{token}``: an active link goes on to the store, anything else gets a friendly page."""

from __future__ import annotations

import re

import pytest

from app.codes import referrals
from app.db import utcnow
from app.models import ReferralLink
from tests.helpers import make_shop, make_shop_with_programs

SHOP = "demo.myshopify.com"


@pytest.fixture
def link(db, rt) -> ReferralLink:  # type: ignore[no-untyped-def]
    """An active link of a shop whose referral program is off (no friend codes: the friendly page)."""
    shop = make_shop_with_programs(db, rt.cipher)
    made, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    return made


def clicks(db, link: ReferralLink) -> int:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.get(ReferralLink, link.id).clicks


def test_an_active_link_of_a_program_that_is_off_gets_the_paused_page_and_counts_the_click(client, db, link):
    opened = client.get(f"/r/{link.token}")
    text = opened.get_data(as_text=True)
    assert opened.status_code == 200 and "Referrals are paused" in text
    assert store_button(text) == f"https://{SHOP} {SHOP}"
    assert opened.headers["Cache-Control"] == "no-store"  # every opening must reach us
    assert opened.headers["Referrer-Policy"] == "no-referrer" and opened.headers["X-Robots-Tag"] == "noindex"
    assert "Set-Cookie" not in opened.headers  # no code, nothing to remember
    client.get(f"/r/{link.token}")
    assert clicks(db, link) == 2


def test_a_head_request_is_answered_but_not_counted(client, db, link):
    looked = client.head(f"/r/{link.token}")  # where a visitor would go, without a code taken
    assert looked.status_code == 302 and looked.headers["Location"] == f"https://{SHOP}"
    assert clicks(db, link) == 0


def store_button(page: str) -> str | None:
    found = re.search(r'<a class="button" href="([^"]+)">Continue to ([^<]+)</a>', page)
    return f"{found.group(1)} {found.group(2)}" if found else None


def test_a_retired_link_is_gone_but_still_leads_to_the_store(client, db, link):
    referrals.retire(db, link)
    db.commit()
    page = client.get(f"/r/{link.token}")
    text = page.get_data(as_text=True)
    assert page.status_code == 410 and page.content_type.startswith("text/html")
    assert "This link is no longer active" in text and "has been retired." in text
    assert store_button(text) == f"https://{SHOP} {SHOP}"
    assert 'href="/static/app.css' in text  # the app's own layout
    assert page.headers["Cache-Control"] == "no-store"
    assert clicks(db, link) == 0


@pytest.mark.parametrize("path", ["/r/" + "Z" * 22, "/r/short", "/r/a/b/c", "/r/" + "A" * 300,
                                  "/r/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/r/%00"])
def test_an_unknown_link_gets_the_friendly_page_not_an_error(client, link, path):
    page = client.get(path)
    text = page.get_data(as_text=True)
    assert page.status_code == 404 and page.content_type.startswith("text/html")
    assert "This link is no longer active" in text and "or was never valid" in text
    assert store_button(text) is None  # the store is not known: nowhere to send the visitor
    assert "<script>" not in text


def test_a_store_that_uninstalled_gets_a_paused_page_with_its_store(client, db, link):
    from app.models import Shop

    shop = db.get(Shop, link.shop_id)
    shop.uninstalled_at, shop.access_token = utcnow(), None
    db.commit()
    page = client.get(f"/r/{link.token}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Referrals are paused" in text
    assert store_button(text) == f"https://{SHOP} {SHOP}"
    assert clicks(db, link) == 0


def test_the_landing_is_limited_per_address_like_every_public_page(app_factory, db, rt):
    app = app_factory(public_rate_limit="3 per minute")
    with app.extensions["oncecode"].db.session_scope() as session:
        token = referrals.create_link(session, make_shop(session, rt.cipher).id, 42)[0].token
    client = app.test_client()
    got = [client.get(f"/r/{token}").status_code for _ in range(3)] + [client.get("/r/" + "Z" * 22).status_code]
    assert got == [200, 200, 200, 429]  # (no programs: the paused page)
    assert client.get("/").status_code == 429  # one budget for every public page


def test_a_database_outage_is_a_503_not_a_trace(app_factory, link):
    broken = app_factory(database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    page = broken.test_client().get(f"/r/{link.token}")
    assert page.status_code == 503 and "database unavailable" in page.get_data(as_text=True)
