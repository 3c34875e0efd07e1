"""The Health page: what needs attention, failed codes with their reasons and a Retry that happens once,
webhook deliveries of the last day by topic and status, catch-up with "Reconcile now" (queued once),
the Admin API bucket as last seen, the token's life in plain words, codes on the store against the cap,
the set-up — and never another shop's rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from rq import Queue
from sqlalchemy import select

from app.codes import health
from app.db import utcnow
from app.models import IssuedCode, ReconcileCursor, Shop, WebhookEvent
from app.queues import catch_up_job_id, job_status
from app.shopify.throttle import ShopBuckets
from tests.admin.test_embedded import OTHER, SHOP, installed, open_page  # noqa: F401 (fixture)
from tests.admin.test_referrals_page import rows_of
from tests.auth.test_install import HOST
from tests.helpers import issued_code, make_shop_with_programs, session_token


def post(client, path: str):  # type: ignore[no-untyped-def]
    return client.post(path, data={"id_token": session_token(SHOP)},
                       query_string={"shop": SHOP, "host": HOST, "embedded": "1"})


def page(client, **query: str):  # type: ignore[no-untyped-def]
    return open_page(client, session_token(SHOP), "/admin/health", **query)


def failed_code(db, shop, code: str, reason: str = "the store refused the code: Code must be unique"):  # type: ignore[no-untyped-def]
    row = issued_code(db, shop, code, status="failed")
    row.last_error = reason
    db.commit()
    return row


@pytest.fixture
def other(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, domain=OTHER)


def test_a_healthy_new_store_says_so_and_what_each_part_is_for(client, installed):  # noqa: F811
    html = page(client).text
    assert "Welcome codes are off" in html  # the dashboard's attention list, at the top
    assert "Every code reached your store" in html
    assert "No webhook arrived in the last 24 hours" in html
    assert "No call to your store in the last 15 minutes" in html
    assert "Renews itself" in html and "Complete" in html
    assert re.search(r'<meter class="cap"[^>]*value="0.0"', html)


def test_failed_codes_show_their_reasons_newest_first_in_pages(client, installed, db, monkeypatch):  # noqa: F811
    monkeypatch.setattr("app.admin.health.PAGE", 2)
    for n in range(3):
        failed_code(db, installed, f"WELCOME-FAIL{n}", reason=f"reason number {n}")
    issued_code(db, installed, "WELCOME-FINE")
    first = page(client)
    rows = rows_of(first.text[first.text.index('id="failed"'):])
    assert [re.search(r"WELCOME-FAIL\d", row).group(0) for row in rows] == ["WELCOME-FAIL2", "WELCOME-FAIL1"]
    assert "reason number 2" in rows[0] and "3 codes could not be issued" in first.text
    older = re.search(r'href="([^"]+)" rel="next">Older', first.text).group(1).replace("&amp;", "&")
    second = client.get(older + "&id_token=" + session_token(SHOP))
    rest = rows_of(second.text[second.text.index('id="failed"'):])
    assert len(rest) == 1 and "WELCOME-FAIL0" in rest[0] and "Newest" in second.text
    bad = page(client, before="x")
    assert bad.status_code == 400 and '<p class="error" id="before-err">before must be an id' in bad.text


def test_retry_puts_a_failed_code_on_its_way_once(client, installed, db, rt):  # noqa: F811
    row = failed_code(db, installed, "WELCOME-RETRY")
    first = post(client, f"/admin/health/codes/{row.id}/retry")
    assert first.status_code == 303 and "notice=health-retried" in first.headers["Location"]
    db.expire_all()
    assert db.get(IssuedCode, row.id).status == "created" and db.get(IssuedCode, row.id).last_error is None
    queued = len(Queue("default", connection=rt.redis))
    assert queued == 1
    again = post(client, f"/admin/health/codes/{row.id}/retry")  # a double click
    assert again.status_code == 303 and "notice=health-retried" in again.headers["Location"]
    assert len(Queue("default", connection=rt.redis)) == queued
    shown = client.get(again.headers["Location"] + "&id_token=" + session_token(SHOP))
    assert "The code is on its way to your store again." in shown.text and "WELCOME-RETRY" not in shown.text


def test_retrying_a_code_that_did_not_fail_says_why(client, installed, db, rt):  # noqa: F811
    row = issued_code(db, installed, "WELCOME-REDEEMED", status="redeemed")
    refused = post(client, f"/admin/health/codes/{row.id}/retry")
    assert refused.status_code == 409
    assert '<p id="retry-err">Code WELCOME-REDEEMED is redeemed; only failed codes are retried.</p>' in refused.text
    assert len(Queue("default", connection=rt.redis)) == 0


def test_another_shops_failed_codes_are_neither_shown_nor_retried(client, installed, other, db):  # noqa: F811
    theirs = failed_code(db, other, "OTHER-FAIL")
    html = page(client).text
    assert "OTHER-FAIL" not in html and "Every code reached your store" in html
    refused = post(client, f"/admin/health/codes/{theirs.id}/retry")
    assert refused.status_code == 404 and "This code is not in your store" in refused.text
    assert post(client, "/admin/health/codes/999999/retry").status_code == 404  # as for none at all
    db.expire_all()
    assert db.get(IssuedCode, theirs.id).status == "failed"


def test_webhooks_of_the_last_day_are_counted_by_topic_and_status(client, installed, other, db):  # noqa: F811
    now = utcnow()
    events = [(SHOP, "orders/paid", "processed", 1), (SHOP, "orders/paid", "processed", 2),
              (SHOP, "orders/paid", "failed", 3), (SHOP, "customers/create", "ignored", 4),
              (SHOP, "orders/paid", "processed", 30),  # older than a day
              (OTHER, "orders/paid", "failed", 1)]  # another shop's
    db.add_all([WebhookEvent(event_id=f"e{n}", shop_domain=shop, topic=topic, status=status,
                             received_at=now - timedelta(hours=hours)) for n, (shop, topic, status, hours)
                in enumerate(events)])
    db.commit()
    html = page(client).text
    assert "4 received" in html
    table = html[html.index("Webhooks, last 24 hours"):]
    rows = rows_of(table)
    cells = [re.sub(r"<[^>]+>", " ", row).split() for row in rows]
    assert cells == [["customers/create", "0", "1", "0", "0"], ["orders/paid", "2", "0", "0", "1"]]
    counted = health.webhook_deliveries(db, SHOP, now)
    assert counted["totals"] == {"pending": 0, "processed": 2, "failed": 1, "ignored": 1, "total": 4}


def test_reconcile_now_is_queued_once(client, installed, db, rt):  # noqa: F811
    first = post(client, "/admin/health/reconcile")
    assert first.status_code == 303 and "notice=reconcile-queued" in first.headers["Location"]
    assert db.get(ReconcileCursor, installed.id) is not None
    assert job_status(rt.redis, catch_up_job_id(installed.id)).value == "queued"
    second = post(client, "/admin/health/reconcile")
    assert second.status_code == 303 and "notice=reconcile-running" in second.headers["Location"]
    assert len(Queue("default", connection=rt.redis)) == 1
    assert '<span class="badge info">Queued</span>' in page(client).text


def test_catch_up_errors_show(client, installed, db):  # noqa: F811
    from app.codes import catch_up

    cursor = catch_up.cursor_for(db, installed)
    cursor.last_error = "ReadTimeout: the store did not answer"
    db.commit()
    html = page(client).text
    assert "Checking paid orders is failing" in html and '<dd class="error-text">ReadTimeout' in html


def test_the_admin_api_bucket_is_shown_as_last_seen(client, installed, rt):  # noqa: F811
    ShopBuckets(rt.redis).observe(SHOP, {"maximumAvailable": 2000.0, "currentlyAvailable": 1500.0,
                                         "restoreRate": 100.0})
    ShopBuckets(rt.redis).observe(OTHER, {"maximumAvailable": 4000.0, "currentlyAvailable": 10.0,
                                          "restoreRate": 200.0})
    html = page(client).text
    assert re.search(r"<strong>1,500</strong> of 2,000 points were available at .*; they come back at 100 a second",
                     html)
    assert "4,000" not in html
    bucket = health.admin_bucket(rt.redis, SHOP)
    assert bucket["known"] and 1500 <= bucket["available_now"] <= 2000


def test_token_life_in_plain_words(db, rt):
    now = utcnow()
    expiring = Shop(domain="a.myshopify.com", access_token=b"x", access_token_expires_at=now + timedelta(minutes=50),
                    refresh_token=b"y", refresh_token_expires_at=now + timedelta(days=80))
    life = health.token_life(expiring, now)
    assert life["access"]["state"] == "renews" and life["access"]["words"].startswith("Renews itself")
    assert life["refresh"]["state"] == "renews" and "opening OnceCode renews it" in life["refresh"]["words"]
    permanent = Shop(domain="b.myshopify.com", access_token=b"x")
    assert health.token_life(permanent, now)["access"]["words"] == "Does not expire."
    lapsed = Shop(domain="c.myshopify.com", access_token=b"x", access_token_expires_at=now - timedelta(days=1),
                  refresh_token=b"y", refresh_token_expires_at=now - timedelta(hours=1))
    life = health.token_life(lapsed, now)
    assert life["access"]["state"] == life["refresh"]["state"] == "lapsed"
    assert "open OnceCode from your Shopify admin" in life["refresh"]["words"]


def test_codes_on_the_store_and_a_failed_set_up_show(client, installed, db):  # noqa: F811
    for n in range(3):
        issued_code(db, installed, f"WELCOME-LIVE{n}")
    installed.setup_completed_at = None
    installed.setup_error = "webhookSubscriptionCreate refused: Address is invalid"
    db.commit()
    html = page(client).text
    assert re.search(r'OnceCode codes live</div><div class="value">3</div>', html)
    assert "Set-up has not finished" in html and '<span class="badge critical">Failed</span>' in html
    assert db.scalar(select(IssuedCode.id).where(IssuedCode.shop_id != installed.id)) is None
