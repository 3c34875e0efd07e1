"""The Referrals pages: referrals with their status and reasons in plain words (filters, keyset pages),
the advocates' links (create for a customer, retire: the API's shared actions, idempotent), the friend
code pool with "top up now" and the landing's blocks — never another shop's rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import func, select

from app.codes import landing, referrals
from app.db import utcnow
from app.models import Referral, ReferralBlock, ReferralLink
from app.queues import job_status, pool_top_up_job_id, referral_link_job_id
from tests.admin.test_embedded import OTHER, SHOP, installed, open_page  # noqa: F401 (fixture)
from tests.auth.test_install import HOST
from tests.codes.test_referral_list import a_referral
from tests.helpers import issued_code, make_shop_with_programs, program_of, session_token


def post(client, path: str, data: dict | None = None):  # type: ignore[no-untyped-def]
    return client.post(path, data={**(data or {}), "id_token": session_token(SHOP)},
                       query_string={"shop": SHOP, "host": HOST, "embedded": "1"})


def page(client, path: str = "/admin/referrals", **query: str):  # type: ignore[no-untyped-def]
    return open_page(client, session_token(SHOP), path, **query)


def rows_of(html: str) -> list[str]:
    body = html[html.index("<tbody>"):html.index("</tbody>")] if "<tbody>" in html else ""
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


@pytest.fixture
def other(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, domain=OTHER)


def programs_on(db, shop) -> None:  # type: ignore[no-untyped-def]
    for kind in ("referral_friend", "referral_reward"):
        program_of(db, shop, kind).active = True
        db.commit()  # program_of expires what the session holds


# --- empty states -----------------------------------------------------------------------------------


def test_an_empty_store_says_what_to_do_on_each_tab(client, installed):  # noqa: F811
    listed = page(client)
    assert listed.status_code == 200
    assert "No referral yet" in listed.text and "The referral program is off" in listed.text
    links = page(client, "/admin/referrals/links")
    assert links.status_code == 200 and "No customer has a link yet" in links.text
    assert "Create link" in links.text  # and the way to make one is right there
    pool = page(client, "/admin/referrals/pool")
    assert pool.status_code == 200 and "No cap has stopped a friend code yet" in pool.text
    assert "Top up now" not in pool.text  # the friend program is off: no pool is kept


def test_the_settings_link_goes_to_the_reward_programs_settings_with_shopifys_parameters(client, installed):  # noqa: F811
    html = page(client).text
    link = re.search(r'<a class="button secondary" href="([^"]+)">Referral settings</a>', html).group(1)
    reward = program_of(client.application.extensions["oncecode"].db.sessions(), installed, "referral_reward")
    assert link.startswith(f"/admin/programs/{reward.id}?") and link.endswith("#referral-settings")
    assert f"shop={SHOP}" in link and "embedded=1" in link
    assert re.search(r'<a href="/admin/referrals\?[^"]*" aria-current="page">Referrals</a>', html)


# --- the referrals --------------------------------------------------------------------------------


def test_each_referral_shows_its_status_and_why_in_plain_words(client, installed, db):  # noqa: F811
    held = a_referral(db, installed, advocate=41)
    reward = issued_code(db, installed, "REWARD-1", kind="referral_reward")
    a_referral(db, installed, advocate=42, status="rewarded", reward_code_id=reward.id)
    a_referral(db, installed, advocate=43, status="voided", reason="order_refunded")
    a_referral(db, installed, advocate=44, status="blocked", reason="same_email")
    html = page(client).text
    rows = rows_of(html)
    assert len(rows) == 4
    blocked, voided, rewarded, held_row = rows  # newest first
    assert "Blocked" in blocked and "placed with the advocate&#39;s email address" in blocked
    assert "Voided" in voided and "refunded beyond the allowed share" in voided
    assert "Rewarded" in rewarded and "REWARD-1" in rewarded
    assert "Held" in held_row and f"Held until {held.hold_until:%Y-%m-%d %H:%M} UTC" in held_row


def test_referrals_filter_by_status_and_advocate(client, installed, db):  # noqa: F811
    a_referral(db, installed, advocate=41)
    a_referral(db, installed, advocate=42, status="blocked", reason="self_referral")
    blocked = rows_of(page(client, status="blocked").text)
    assert len(blocked) == 1 and "placed by the advocate themselves" in blocked[0]
    mine = rows_of(page(client, customer_id="41").text)
    assert len(mine) == 1 and ">41<" in mine[0]
    none = page(client, status="voided")
    assert none.status_code == 200 and "No referral matches" in none.text


def test_referrals_come_in_keyset_pages(client, installed, db, monkeypatch):  # noqa: F811
    monkeypatch.setattr("app.admin.referrals.PAGE", 2)
    made = [a_referral(db, installed, advocate=40 + n).id for n in range(3)]
    first = page(client)
    assert len(rows_of(first.text)) == 2
    older = re.search(r'href="([^"]+)" rel="next">Older', first.text).group(1).replace("&amp;", "&")
    assert f"before={made[1]}" in older
    second = client.get(older + "&id_token=" + session_token(SHOP))
    rest = rows_of(second.text)
    assert len(rest) == 1 and db.get(Referral, made[0]).order_name in rest[0]
    assert "Older" not in second.text and "Newest" in second.text


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"status": "pending"}, "status", "status must be one of held, rewarded, voided, blocked, not &#39;pending&#39;"),
    ({"customer_id": "abc"}, "customer_id", "customer_id must be a Shopify customer id"),
    ({"before": "-1"}, "before", "before must be an id"),
])
def test_a_bad_filter_is_named_next_to_its_field(client, installed, db, query, field, message):  # noqa: F811
    a_referral(db, installed)
    answer = page(client, **query)
    assert answer.status_code == 400
    assert re.search(rf'<p class="error" id="f-{field}-err">{message}', answer.text), answer.text
    if field != "before":
        assert re.search(rf'id="f-{field}" name="{field}" aria-invalid="true" aria-describedby="f-{field}-err"',
                         answer.text)
    assert not rows_of(answer.text)


def test_another_shops_referrals_never_show(client, installed, other, db):  # noqa: F811
    a_referral(db, other, advocate=77, status="blocked", reason="same_email")
    html = page(client).text
    assert "No referral yet" in html and ">77<" not in html


# --- advocates' links -----------------------------------------------------------------------------


def test_a_link_is_made_for_a_customer_once_however_often_asked(client, installed, db, rt):  # noqa: F811
    made = post(client, "/admin/referrals/links", {"customer_id": "gid://shopify/Customer/501"})
    assert made.status_code == 303 and "notice=link-created" in made.headers["Location"]
    link = db.scalars(select(ReferralLink).where(ReferralLink.shop_id == installed.id)).one()
    assert referrals.customer_shopify_id(db, link) == 501
    assert job_status(rt.redis, referral_link_job_id(link.id, "active")).value == "queued"  # the metafield job
    again = post(client, "/admin/referrals/links", {"customer_id": "501"})
    assert again.status_code == 303 and "notice=link-exists" in again.headers["Location"]
    assert db.scalar(select(func.count()).select_from(ReferralLink)) == 1
    assert len(Queue("default", connection=rt.redis)) == 1  # one job, not two
    shown = client.get(again.headers["Location"] + "&id_token=" + session_token(SHOP))
    assert "This customer has an active link already" in shown.text
    row = rows_of(shown.text)
    assert len(row) == 1 and link.token in row[0] and "On its way to the customer" in row[0]


@pytest.mark.parametrize("customer", ["", "abc", "0", "99999999999999999999", "gid://shopify/Order/5"])
def test_a_bad_customer_id_is_named_next_to_the_field(client, installed, db, customer):  # noqa: F811
    refused = post(client, "/admin/referrals/links", {"customer_id": customer})
    assert refused.status_code == 400
    assert re.search(r'<p class="error" id="n-customer_id-err">customer_id must be a Shopify customer id', refused.text)
    assert 'id="n-customer_id" name="customer_id" aria-invalid="true"' in refused.text
    assert db.scalar(select(func.count()).select_from(ReferralLink)) == 0


def test_retiring_a_link_is_confirmed_in_place_and_happens_once(client, installed, db, rt):  # noqa: F811
    link, _ = referrals.create_link(db, installed.id, 601)
    db.commit()
    html = page(client, "/admin/referrals/links").text
    assert re.search(r'<details class="confirm">\s*<summary class="button critical">Retire</summary>', html)
    assert f'action="/admin/referrals/links/{link.id}/retire?' in html
    first = post(client, f"/admin/referrals/links/{link.id}/retire")
    assert first.status_code == 303 and "notice=link-retired" in first.headers["Location"]
    db.expire_all()
    retired_at = db.get(ReferralLink, link.id).retired_at
    assert db.get(ReferralLink, link.id).status == "retired" and retired_at is not None
    assert job_status(rt.redis, referral_link_job_id(link.id, "retired")).value == "queued"
    second = post(client, f"/admin/referrals/links/{link.id}/retire")
    assert second.status_code == 303
    db.expire_all()
    assert db.get(ReferralLink, link.id).retired_at == retired_at  # nothing more happened
    shown = page(client, "/admin/referrals/links")
    assert "Retired" in shown.text and "Yes, retire this link" not in shown.text


def test_another_shops_link_is_neither_shown_nor_retired(client, installed, other, db):  # noqa: F811
    theirs, _ = referrals.create_link(db, other.id, 701)
    db.commit()
    assert theirs.token not in page(client, "/admin/referrals/links").text
    refused = post(client, f"/admin/referrals/links/{theirs.id}/retire")
    assert refused.status_code == 404 and "This link is not in your store" in refused.text
    assert post(client, "/admin/referrals/links/999999/retire").status_code == 404  # as for none at all
    db.expire_all()
    assert db.get(ReferralLink, theirs.id).status == "active"


def test_links_filter_and_a_failed_metafield_says_why(client, installed, db):  # noqa: F811
    kept, _ = referrals.create_link(db, installed.id, 801)
    gone, _ = referrals.create_link(db, installed.id, 802)
    referrals.retire(db, gone)
    kept.last_error = "the store refused the customer's referral_link metafield: Owner not found"
    kept.synced_at = utcnow()
    db.commit()
    active = rows_of(page(client, "/admin/referrals/links", status="active").text)
    assert len(active) == 1 and "Refused by the store" in active[0] and "Owner not found" in active[0]
    assert len(rows_of(page(client, "/admin/referrals/links", customer_id="802").text)) == 1
    bad = page(client, "/admin/referrals/links", status="gone")
    assert bad.status_code == 400 and 'id="f-status-err">status must be one of active, retired' in bad.text


# --- the pool and the blocks ------------------------------------------------------------------------


def test_the_pool_shows_its_figures_and_tops_up_once(client, installed, db, rt):  # noqa: F811
    programs_on(db, installed)
    html = page(client, "/admin/referrals/pool").text
    assert "Available now" in html and "Top up now" in html and "The referral program is off" not in html
    first = post(client, "/admin/referrals/pool/top-up")
    assert first.status_code == 303 and "notice=pool-top-up" in first.headers["Location"]
    friend = program_of(db, installed, "referral_friend")
    assert job_status(rt.redis, pool_top_up_job_id(installed.id, friend.id)).value == "queued"
    second = post(client, "/admin/referrals/pool/top-up")
    assert second.status_code == 303 and "notice=pool-top-up-running" in second.headers["Location"]
    assert len(Queue("default", connection=rt.redis)) == 1


def test_a_top_up_while_the_program_is_off_says_so(client, installed, db, rt):  # noqa: F811
    refused = post(client, "/admin/referrals/pool/top-up")
    assert refused.status_code == 409
    assert "The referral_friend program is off; switch it on first." in refused.text
    assert len(Queue("default", connection=rt.redis)) == 0


def test_the_caps_blocks_show_in_plain_words_and_only_this_shops(client, installed, other, db):  # noqa: F811
    link, _ = referrals.create_link(db, installed.id, 901)
    theirs, _ = referrals.create_link(db, other.id, 902)
    db.add_all([ReferralBlock(shop_id=installed.id, link_id=link.id, reason="link_daily_cap",
                              at=utcnow() - timedelta(minutes=5)),
                ReferralBlock(shop_id=other.id, link_id=theirs.id, reason="address_hourly_cap")])
    db.commit()
    html = page(client, "/admin/referrals/pool").text
    rows = rows_of(html)
    assert len(rows) == 1 and "The link reached its daily cap of friend codes" in rows[0]
    assert '<span class="mono">901</span>' in rows[0]  # the advocate the merchant knows, not a row id
    assert "hourly cap of friend codes" not in html
    assert [b["customer_id"] for b in landing.blocks(db, other.id)] == [902]
