"""The Codes page: search and filters (the API's, through ``issuance.list_codes``), keyset pages, a code's
detail, revoke and retry (once however often sent), a code issued by hand, and the CSV export streamed
with flat memory; a token for one shop never shows or changes another shop's codes."""

from __future__ import annotations

import csv
import gc
import io
import re
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from rq import Queue
from sqlalchemy import func, select, text

from app.codes import issuance
from app.config import DEFAULT_SCOPES
from app.models import Customer, IssuedCode, RedemptionAnomaly, Shop
from tests.auth.test_install import HOST
from tests.helpers import issued_code, make_shop_with_programs, program_of, session_token

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"


def page(client, path: str = "/admin/codes", shop: str = SHOP, **query: str):  # type: ignore[no-untyped-def]
    return client.get(path, query_string={"embedded": "1", "host": HOST, "shop": shop,
                                          "id_token": session_token(shop), **query})


def post(client, path: str, shop: str = SHOP, **form: str):  # type: ignore[no-untyped-def]
    return client.post(path, query_string={"shop": shop, "host": HOST},
                       data={"id_token": session_token(shop), **form})


def codes_shown(html: str) -> list[str]:
    return re.findall(r'<td class="mono"><a href="[^"]*">([^<]+)</a></td>', html)


def link(html: str, rel: str) -> dict[str, list[str]] | None:
    found = re.search(rf'<a class="button secondary" href="([^"]+)" rel="{rel}">', html)
    return parse_qs(urlsplit(unescape(found.group(1))).query) if found else None


def error_of(html: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="f-{field}-err">([^<]+)</p>', html)
    assert found, f"no error next to {field}"
    assert re.search(rf'id="f-{field}"[^>]*aria-invalid="true" aria-describedby="f-{field}-err"', html) or \
        re.search(rf'id="f-{field}"[^>]*aria-describedby="[^"]*f-{field}-err"[^>]*aria-invalid="true"', html)
    return unescape(found.group(1))


def installed_shop(db, rt, domain: str) -> Shop:  # type: ignore[no-untyped-def]
    shop = make_shop_with_programs(db, rt.cipher, domain=domain)
    shop.scopes = DEFAULT_SCOPES
    db.commit()
    return shop


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return installed_shop(db, rt, SHOP)


@pytest.fixture
def other(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return installed_shop(db, rt, OTHER)


def customer(db, shop: Shop, shopify_id: int) -> Customer:  # type: ignore[no-untyped-def]
    row = Customer(shop_id=shop.id, shopify_customer_id=shopify_id, created_at=datetime.now(UTC))
    db.add(row)
    db.commit()
    return row


def bulk_codes(db, shop: Shop, count: int, prefix: str = "BULK-", kind: str = "welcome",  # type: ignore[no-untyped-def]
               apart: int = 1) -> None:
    """``count`` codes of the shop in one statement, issued ``apart`` minutes apart (the newest now)."""
    program = program_of(db, shop, kind)
    db.execute(text(
        "INSERT INTO issued_codes (shop_id, program_id, code, idempotency_key, status, terms, create_attempts, "
        "issued_at, created_at, updated_at) SELECT :shop, :program, :prefix || lpad(n::text, 7, '0'), "
        "'bulk:' || :prefix || n, 'attached', '{}', 1, now() - make_interval(mins => (:count - n) * :apart), "
        "now(), now() "
        "FROM generate_series(1, :count) AS n"), {"shop": shop.id, "program": program.id, "prefix": prefix,
                                                 "count": count, "apart": apart})
    db.commit()


# --- the list -------------------------------------------------------------------------------------

def test_no_codes_yet_says_what_to_do(client, shop):
    answer = page(client)
    assert answer.status_code == 200
    assert "No codes yet" in answer.text and "switch on the welcome program" in answer.text
    assert f'href="/admin/?shop={SHOP}' in answer.text.replace("&amp;", "&") or "/admin/?" in answer.text
    assert "Download CSV" not in answer.text  # nothing to download


def test_the_codes_nav_link_is_in_the_app_nav(client, shop):
    html = page(client).text
    nav = html[html.index("<s-app-nav>"):html.index("</s-app-nav>")]
    assert ">Codes</a>" in nav and "/admin/codes?" in nav


def test_codes_newest_first_with_program_status_customer_and_order(client, db, shop):
    buyer = customer(db, shop, 4242)
    older = issued_code(db, shop, "WELCOME-AAA", issued_at=datetime.now(UTC) - timedelta(days=2))
    newer = issued_code(db, shop, "WELCOME-BBB", status="redeemed", customer_id=buyer.id)
    newer.order_name, newer.order_total, newer.currency = "#1001", Decimal("90.00"), "EUR"
    db.commit()
    html = page(client).text
    assert codes_shown(html) == [newer.code, older.code]
    assert "4242" in html and "#1001" in html and "90.00 EUR" in html and ">Redeemed</span>" in html
    assert '<div class="table-wrap">' in html  # scrolls sideways at 360 px instead of overflowing


@pytest.mark.parametrize(("query", "expected"), [
    ({"code": "welcome-a"}, ["WELCOME-AB2", "WELCOME-AB1"]),  # a prefix, any case
    ({"code": " welcome-ab1 "}, ["WELCOME-AB1"]),  # the whole code
    ({"code": "WELCOME-A_"}, []),  # LIKE's wildcards are plain characters
    ({"code": "%"}, []),
    ({"customer_id": "777"}, ["REFER-C"]),
    ({"customer_id": "gid://shopify/Customer/777"}, ["REFER-C"]),
    ({"status": "failed"}, ["WELCOME-AB2"]),
    ({"status": "open"}, ["REFER-C", "WELCOME-AB1"]),
    ({"status": "redeemed"}, []),
    ({"program": "referral_friend"}, ["REFER-C"]),
    ({"from": "2026-11-10", "to": "2026-11-10"}, ["WELCOME-AB2"]),
    ({"from": "2026-11-11"}, ["REFER-C"]),
    ({"to": "2026-11-09"}, ["WELCOME-AB1"]),
], ids=lambda value: str(value))
def test_filters(client, db, shop, query, expected):
    shop.iana_timezone = "America/New_York"
    db.commit()
    buyer = customer(db, shop, 777)
    # 03:00 UTC on the 10th is still the 9th in New York: the store's days decide.
    issued_code(db, shop, "WELCOME-AB1", issued_at=datetime(2026, 11, 10, 3, 0, tzinfo=UTC))
    issued_code(db, shop, "WELCOME-AB2", status="failed", issued_at=datetime(2026, 11, 10, 15, 0, tzinfo=UTC))
    issued_code(db, shop, "REFER-C", kind="referral_friend", customer_id=buyer.id,
                issued_at=datetime(2026, 11, 12, 15, 0, tzinfo=UTC))
    if "program" in query:
        query = {"program_id": str(program_of(db, shop, query.pop("program")).id), **query}
    answer = page(client, **query)
    assert answer.status_code == 200
    assert codes_shown(answer.text) == expected
    if not expected:
        assert "No codes match" in answer.text


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"customer_id": "abc"}, "customer_id", "customer_id must be a Shopify customer id"),
    ({"status": "lost"}, "status", "status must be one of reserved, created"),
    ({"program_id": "999999"}, "program_id", "no program"),
    ({"program_id": "x"}, "program_id", "program_id must be an id"),
    ({"from": "2026-13-01"}, "from", "from must be a date like 2026-11-30"),
    ({"from": "2026-11-20", "to": "2026-11-10"}, "to", "from (2026-11-20) must not be after to (2026-11-10)"),
    ({"code": "X" * 65}, "code", "code must be at most 64 characters"),
    ({"customer_id": "x", "from": "2026-11-20", "to": "2026-11-10"}, "to", "must not be after to"),
])
def test_bad_filters_answer_400_with_the_message_next_to_the_field(client, shop, db, query, field, message):
    issued_code(db, shop, "WELCOME-ONE")
    answer = page(client, **query)
    assert answer.status_code == 400
    assert message in error_of(answer.text, field)
    assert codes_shown(answer.text) == []


def test_keyset_pages_older_and_newer_cover_every_code_once(client, db, shop):
    bulk_codes(db, shop, 120)
    first = page(client).text
    shown = codes_shown(first)
    assert shown[0] == "BULK-0000120" and len(shown) == 50 and link(first, "prev") is None
    older = link(first, "next")
    assert older["before"] == [str(db.scalar(select(IssuedCode.id).where(IssuedCode.code == shown[-1])))]
    second = page(client, before=older["before"][0]).text
    third_query = link(second, "next")
    third = page(client, before=third_query["before"][0]).text
    assert link(third, "next") is None  # the last 20
    everything = shown + codes_shown(second) + codes_shown(third)
    assert everything == [f"BULK-{n:07d}" for n in range(120, 0, -1)]
    # Back from the third page: the 50 codes just newer, still newest first.
    back = link(third, "prev")
    assert page(client, after=back["after"][0]).text.count("BULK-") >= 50
    assert codes_shown(page(client, after=back["after"][0]).text) == codes_shown(second)
    # Filters travel with the page links.
    filtered = page(client, code="bulk-00000").text
    assert link(filtered, "next")["code"] == ["bulk-00000"]


def test_pages_follow_the_issue_time_and_then_the_id(client, db, shop):
    """The list is newest first by issue time (its index), ties broken by id: codes issued in the
    same instant are neither repeated nor skipped across pages, and a code reserved with an earlier
    time after a later one still sits by its time."""
    bulk_codes(db, shop, 70, prefix="SAME-", apart=0)  # one instant
    late = issued_code(db, shop, "EARLIER-TIME", issued_at=datetime.now(UTC) - timedelta(days=3))
    first = page(client).text
    second = page(client, before=link(first, "next")["before"][0]).text
    assert codes_shown(first) + codes_shown(second) == [f"SAME-{n:07d}" for n in range(70, 0, -1)] + [late.code]
    assert codes_shown(page(client, after=link(second, "prev")["after"][0]).text) == codes_shown(first)


def test_a_page_key_of_another_shop_shows_nothing_of_it(client, db, shop, other):
    theirs = issued_code(db, other, "THEIRS-KEY")
    issued_code(db, shop, "OURS-KEY")
    assert "THEIRS" not in page(client, before=str(theirs.id + 1)).text


def test_a_filter_with_a_page_key_that_is_not_an_id_is_refused(client, shop):
    assert page(client, before="abc").status_code == 400
    assert page(client, before="1", after="2").status_code == 400


def test_another_shops_codes_are_never_listed(client, db, shop, other):
    issued_code(db, other, "THEIRS-1")
    issued_code(db, shop, "OURS-1")
    html = page(client).text
    assert codes_shown(html) == ["OURS-1"] and "THEIRS" not in html
    assert codes_shown(page(client, shop=OTHER).text) == ["THEIRS-1"]


def test_the_api_takes_the_same_code_and_day_filters(client, db, shop):
    issued_code(db, shop, "WELCOME-API1", issued_at=datetime(2026, 11, 10, 12, 0, tzinfo=UTC))
    issued_code(db, shop, "WELCOME-API2", issued_at=datetime(2026, 11, 12, 12, 0, tzinfo=UTC))
    issued_code(db, shop, "OTHER-API3", issued_at=datetime(2026, 11, 12, 13, 0, tzinfo=UTC))
    headers = {"Authorization": f"Bearer {session_token(SHOP)}"}
    answer = client.get("/api/codes", query_string={"code": "welcome-api", "from": "2026-11-11"}, headers=headers)
    assert answer.status_code == 200 and [c["code"] for c in answer.json["codes"]] == ["WELCOME-API2"]
    refused = client.get("/api/codes", query_string={"to": "2026-11-31"}, headers=headers)
    assert refused.status_code == 400 and "to must be a date like 2026-11-30" in refused.json["error"]


# --- a code ---------------------------------------------------------------------------------------

def test_a_codes_detail_shows_its_timeline_order_terms_and_anomalies(client, db, shop):
    buyer = customer(db, shop, 555)
    row = issued_code(db, shop, "WELCOME-DET", status="redeemed", customer_id=buyer.id,
                      issued_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    row.attached_at = datetime(2026, 11, 1, 12, 1, tzinfo=UTC)
    row.redeemed_at = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    row.order_id, row.order_name = 9001, "#1042"
    row.order_total, row.order_subtotal = Decimal("80.00"), Decimal("85.00")
    row.discount_amount, row.currency = Decimal("8.50"), "CAD"
    db.add(RedemptionAnomaly(shop_id=shop.id, code_id=row.id, shopify_order_id=9002, order_name="#1043"))
    db.commit()
    answer = page(client, f"/admin/codes/{row.id}")
    assert answer.status_code == 200
    html = answer.text
    steps = re.findall(r'<li class="(done|pending) \w+">\s*<span class="step">([^<]+)</span>\s*'
                       r'<span class="subdued">([^<]+)', html)
    assert [(state, label) for state, label, _ in steps] == [
        ("done", "Reserved"), ("done", "Created on your store"), ("done", "Attached to the customer"),
        ("done", "Redeemed on order #1042")]
    assert steps[0][2] == "01 Nov 2026, 12:00" and steps[3][2] == "03 Nov 2026, 09:30"
    assert "80.00 CAD" in html and "8.50 CAD" in html and "85.00 CAD" in html and "555" in html
    assert "Used more than once" in html and "#1043" in html
    assert "Revoke" not in html  # a redeemed code cannot be revoked


def test_a_failed_code_says_why_in_plain_words_and_offers_a_retry(client, db, shop):
    row = issued_code(db, shop, "WELCOME-FAIL", status="failed")
    row.last_error = "Code must be unique. Please try a different code."
    db.commit()
    html = page(client, f"/admin/codes/{row.id}").text
    assert "This code could not be issued" in html and "Code must be unique" in html
    assert '<li class="done failed">' in html and '<li class="pending attached">' in html
    assert f'action="/admin/codes/{row.id}/retry?' in html


def test_another_shops_code_is_not_found_and_not_changed(client, db, shop, other):
    theirs = issued_code(db, other, "THEIRS-2")
    for answer in (page(client, f"/admin/codes/{theirs.id}"), post(client, f"/admin/codes/{theirs.id}/revoke"),
                   post(client, f"/admin/codes/{theirs.id}/retry")):
        assert answer.status_code == 404 and "Code not found" in answer.text and "THEIRS" not in answer.text
    db.expire_all()
    assert db.get(IssuedCode, theirs.id).status == "attached"


def test_revoking_twice_revokes_once(client, db, shop, redis):
    row = issued_code(db, shop, "WELCOME-REV")
    queue = Queue("default", connection=redis)
    first = post(client, f"/admin/codes/{row.id}/revoke")
    assert first.status_code == 303
    assert urlsplit(first.headers["Location"]).path == f"/admin/codes/{row.id}"
    assert parse_qs(urlsplit(first.headers["Location"]).query)["notice"] == ["code-revoked"]
    db.expire_all()
    revoked_at = db.get(IssuedCode, row.id).revoked_at
    assert db.get(IssuedCode, row.id).status == "revoked" and revoked_at is not None
    jobs = list(queue.job_ids)
    assert f"revoke-{row.id}" in jobs
    second = post(client, f"/admin/codes/{row.id}/revoke")
    assert second.status_code == 303
    db.expire_all()
    assert db.get(IssuedCode, row.id).revoked_at == revoked_at and list(queue.job_ids) == jobs
    shown = client.get(second.headers["Location"] + "&id_token=" + session_token(SHOP))
    assert "Code revoked." in shown.text


def test_revoking_a_redeemed_code_says_why_in_place(client, db, shop):
    row = issued_code(db, shop, "WELCOME-USED", status="redeemed")
    answer = post(client, f"/admin/codes/{row.id}/revoke")
    assert answer.status_code == 409 and "already redeemed; there is nothing to revoke" in answer.text


def test_retrying_twice_retries_once(client, db, shop, redis):
    row = issued_code(db, shop, "WELCOME-RETRY", status="failed")
    row.last_error = "the store refused it"
    db.commit()
    for _ in range(2):
        answer = post(client, f"/admin/codes/{row.id}/retry")
        assert answer.status_code == 303
        assert parse_qs(urlsplit(answer.headers["Location"]).query)["notice"] == ["code-retried"]
    db.expire_all()
    again = db.get(IssuedCode, row.id)
    assert again.status == "created" and again.last_error is None  # it has its discount: created
    assert [job for job in Queue("default", connection=redis).job_ids if job.startswith("issue-")] == \
        [f"issue-{shop.id}-0"]


def test_retrying_a_code_that_did_not_fail_is_refused(client, db, shop):
    row = issued_code(db, shop, "WELCOME-FINE")
    answer = post(client, f"/admin/codes/{row.id}/retry")
    assert answer.status_code == 409 and "only failed codes are retried" in answer.text


# --- issuing by hand ------------------------------------------------------------------------------

def test_issuing_by_hand_twice_with_the_same_form_issues_one_code(client, db, shop):
    form = page(client, "/admin/codes/new").text
    key = re.search(r'name="request_key" value="([0-9a-f]{32})"', form).group(1)
    welcome = program_of(db, shop, "welcome")
    answers = [post(client, "/admin/codes/new", program_id=str(welcome.id), customer_id="31337", request_key=key)
               for _ in range(2)]
    assert [a.status_code for a in answers] == [303, 303]
    assert [parse_qs(urlsplit(a.headers["Location"]).query)["notice"] for a in answers] == \
        [["code-issued"], ["code-issued-before"]]
    assert db.scalar(select(func.count()).select_from(IssuedCode).where(IssuedCode.shop_id == shop.id)) == 1
    row = db.scalars(select(IssuedCode).where(IssuedCode.shop_id == shop.id)).one()
    assert row.idempotency_key == f"manual:{shop.id}:{welcome.id}:31337:{key}"  # as the API derives it
    assert urlsplit(answers[0].headers["Location"]).path == f"/admin/codes/{row.id}"


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"customer_id": "12x"}, "customer_id", "customer_id must be a Shopify customer id"),
    ({"customer_id": ""}, "customer_id", "customer_id must be a Shopify customer id"),
    ({"program_id": "999999"}, "program_id", "Choose one of your programs."),
    ({"program_id": ""}, "program_id", "Choose one of your programs."),
])
def test_issuing_with_bad_input_answers_400_next_to_the_field(client, db, shop, form, field, message):
    welcome = program_of(db, shop, "welcome")
    answer = post(client, "/admin/codes/new", **{"program_id": str(welcome.id), "customer_id": "42",
                                                 "request_key": "a" * 32, **form})
    assert answer.status_code == 400
    assert message in error_of(answer.text, field)
    assert db.scalar(select(func.count()).select_from(IssuedCode)) == 0


def test_a_code_cannot_be_issued_on_another_shops_program(client, db, shop, other):
    theirs = program_of(db, other, "welcome")
    answer = post(client, "/admin/codes/new", program_id=str(theirs.id), customer_id="42", request_key="b" * 32)
    assert answer.status_code == 400 and db.scalar(select(func.count()).select_from(IssuedCode)) == 0


# --- CSV ------------------------------------------------------------------------------------------

def csv_rows(answer) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return list(csv.reader(io.StringIO(answer.get_data(as_text=True))))


def test_the_csv_has_the_columns_a_merchant_needs_and_the_lists_filters(client, db, shop, other):
    buyer = customer(db, shop, 808)
    row = issued_code(db, shop, "WELCOME-CSV1", status="redeemed", customer_id=buyer.id,
                      issued_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
                      expires_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    row.redeemed_at, row.order_name, row.order_total = datetime(2026, 11, 2, 8, 0, tzinfo=UTC), "#77", Decimal("50.00")
    row.discount_amount, row.currency = Decimal("5.00"), "USD"
    db.commit()
    issued_code(db, shop, "WELCOME-CSV2", issued_at=datetime(2026, 11, 5, 12, 0, tzinfo=UTC))
    issued_code(db, other, "THEIRS-CSV")
    db.commit()
    answer = client.get("/admin/codes.csv", query_string={"shop": SHOP, "id_token": session_token(SHOP)},
                        buffered=False)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.is_streamed  # written as it is read, never whole in memory
    answer.make_sequence()
    disposition = answer.headers["Content-Disposition"]
    assert re.fullmatch(r"attachment; filename=oncecode-codes-demo-\d{4}-\d{2}-\d{2}\.csv", disposition)
    rows = csv_rows(answer)
    assert rows[0] == ["code", "program", "status", "customer_id", "issued_at", "expires_at", "redeemed_at",
                       "order_name", "order_total", "discount", "currency"]
    assert rows[1:] == [
        ["WELCOME-CSV2", "Welcome code", "attached", "", "2026-11-05T12:00:00Z", "", "", "", "", "", ""],
        ["WELCOME-CSV1", "Welcome code", "redeemed", "808", "2026-11-01T12:00:00Z", "2026-12-01T12:00:00Z",
         "2026-11-02T08:00:00Z", "#77", "50.00", "5.00", "USD"]]
    only = csv_rows(page(client, "/admin/codes.csv", status="redeemed", code="welcome"))
    assert [r[0] for r in only[1:]] == ["WELCOME-CSV1"]
    theirs = csv_rows(page(client, "/admin/codes.csv", shop=OTHER))
    assert [r[0] for r in theirs[1:]] == ["THEIRS-CSV"]


def test_the_list_links_its_csv_with_its_filters(client, db, shop):
    issued_code(db, shop, "WELCOME-L")
    html = page(client, status="open", code="wel").text
    href = unescape(re.search(r'href="(/admin/codes\.csv\?[^"]+)" download', html).group(1))
    assert parse_qs(urlsplit(href).query) == {"shop": [SHOP], "host": [HOST], "embedded": ["1"],
                                               "code": ["wel"], "status": ["open"]}


def test_csv_cells_that_a_spreadsheet_would_run_are_defused(client, db, shop):
    welcome = program_of(db, shop, "welcome")
    welcome.name = "=HYPERLINK(\"http://evil\")"
    db.commit()
    row = issued_code(db, shop, "-CODE1")
    row.order_name = "@SUM(A1)"
    db.commit()
    rows = csv_rows(page(client, "/admin/codes.csv"))
    assert rows[1][0] == "'-CODE1" and rows[1][1] == "'=HYPERLINK(\"http://evil\")" and rows[1][7] == "'@SUM(A1)"


def test_csv_with_a_bad_filter_is_refused(client, shop):
    answer = page(client, "/admin/codes.csv", status="lost")
    assert answer.status_code == 400 and "status must be one of" in answer.text


def _export_peak(client, expected_rows: int) -> int:  # type: ignore[no-untyped-def]
    gc.collect()
    tracemalloc.start()
    try:
        answer = client.get("/admin/codes.csv", query_string={"shop": SHOP, "id_token": session_token(SHOP)},
                            buffered=False)
        lines = sum(chunk.count(b"\n") for chunk in answer.response)
        answer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == expected_rows + 1
    return peak


def test_a_large_export_streams_with_flat_memory(client, db, shop, monkeypatch):
    """A hundred batches export with the peak memory of ten: rows are read and written a batch at a time.

    The batch is made ten times smaller than the app's (2,000 rows), so that 30,000 codes show what
    300,000 would with the app's batch, in a tenth of the time (tracemalloc slows Python down)."""
    monkeypatch.setattr(issuance, "EXPORT_BATCH", 300)
    bulk_codes(db, shop, 3_000, prefix="SMALL-")
    small = _export_peak(client, 3_000)
    bulk_codes(db, shop, 27_000, prefix="LARGE-")
    large = _export_peak(client, 30_000)
    assert large < small * 1.5 + 200_000, (small, large)
    assert large < 3_000_000  # a few batches, not 30,000 rows (which take ~15 MB as Python objects)
