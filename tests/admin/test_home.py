"""The admin's home: the figures of a chosen range equal the metrics', the daily chart and its table,
what needs attention, and the first run's one step to a live welcome program."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.admin.charts import daily_bars, nice_ceiling
from app.admin.home import preset_days
from app.db import utcnow
from app.models import IssuedCode, Program
from tests.admin.test_embedded import SHOP, installed, open_page  # noqa: F401 (fixture)
from tests.helpers import issued_code, make_shop_with_programs, order_payload, program_of, session_token


def post(client, path: str, data: dict):  # type: ignore[no-untyped-def]
    return client.post(path, data={**data, "id_token": session_token(SHOP)},
                       query_string={"shop": SHOP, "embedded": "1"})


def test_a_first_run_leads_to_a_live_welcome_program_in_one_step(client, installed, db):  # noqa: F811
    page = open_page(client, session_token(SHOP))
    assert page.status_code == 200 and "Turn on welcome codes" in page.text
    assert "Welcome codes are off" in page.text  # and the attention list says why nothing happens

    refused = post(client, "/admin/start", {"value": "150", "expires_after_days": "30"})
    assert refused.status_code == 400
    assert re.search(r'<p class="error" id="start-value-error">value must be more than 0 and at most 100', refused.text)
    assert program_of(db, installed, "welcome").active is False  # nothing changed

    done = post(client, "/admin/start", {"value": "15", "expires_after_days": "14"})
    assert done.status_code == 303 and "notice=welcome-on" in done.headers["Location"]
    welcome = program_of(db, installed, "welcome")
    assert (welcome.active, welcome.value_type, int(welcome.value), welcome.expires_after_days) == (
        True, "percentage", 15, 14)
    shown = open_page(client, session_token(SHOP), notice="welcome-on")
    assert "Welcome codes are on" in shown.text and "Turn on welcome codes" not in shown.text
    assert "Welcome codes are off" not in shown.text


def test_the_figures_are_the_metrics_of_the_chosen_range(client, installed, db, rt):  # noqa: F811
    from app.codes import reconciliation

    now = utcnow()
    for n, age in enumerate((1, 2, 40)):  # two codes in the last 7 days, one long before
        row = issued_code(db, installed, f"WELCOME-{n}", issued_at=now - timedelta(days=age))
        if n == 0:
            order = reconciliation.PaidOrderFacts.from_webhook(order_payload(
                900, [(row.code, "5.00")], total="50.00", processed_at=now.isoformat()))
            reconciliation.reconcile(db, installed.id, order, "webhook")
            db.commit()
    week = open_page(client, session_token(SHOP), range="7d")
    assert week.status_code == 200
    stats = dict(re.findall(r'<div class="label">([^<]+)</div><div class="value">([^<]+)</div>', week.text))
    assert stats["Codes issued"] == "2" and stats["Redeemed"] == "1" and stats["Redemption rate"] == "50.0 %"
    assert stats["Revenue with codes"] == "50.00 USD" and stats["Discount given"] == "5.00 USD"
    assert len(re.findall(r'<rect class="issued"', week.text)) == 7  # a bar pair a day
    quarter = open_page(client, session_token(SHOP), range="90d")
    assert dict(re.findall(r'<div class="label">([^<]+)</div><div class="value">([^<]+)</div>',
                           quarter.text))["Codes issued"] == "3"


def test_bad_custom_dates_are_named_next_to_their_field(client, installed):  # noqa: F811
    page = open_page(client, session_token(SHOP), **{"from": "2026-12-01", "to": "2026-11-01"})
    assert page.status_code == 400
    assert re.search(r'id="from"[^>]*aria-invalid="true"', page.text)
    assert 'id="from-error">from (2026-12-01) must not be after to (2026-11-01)' in page.text
    assert open_page(client, session_token(SHOP), **{"from": "0001-01-01"}).status_code == 400


def test_failed_codes_and_a_half_on_referral_program_need_attention(client, installed, db):  # noqa: F811
    issued_code(db, installed, "WELCOME-FAILED", status="failed")
    reward = program_of(db, installed, "referral_reward")
    reward.active = True
    db.commit()
    page = open_page(client, session_token(SHOP))
    assert "1 code could not be issued" in page.text and "The referral program is half on" in page.text
    assert page.text.index("could not be issued") < page.text.index("half on")  # critical first


def test_another_shops_figures_never_show(client, installed, db, rt):  # noqa: F811
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    for n in range(3):
        issued_code(db, other, f"OTHER-{n}")
    page = open_page(client, session_token(SHOP))
    assert dict(re.findall(r'<div class="label">([^<]+)</div><div class="value">([^<]+)</div>',
                           page.text))["Codes issued"] == "0"
    assert db.scalar(select(IssuedCode.id).where(IssuedCode.shop_id == installed.id)) is None


@pytest.mark.parametrize(("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (51, 100), (1_001, 2_000)])
def test_the_charts_scale_is_one_a_person_reads(value, ceiling):
    assert nice_ceiling(value) == ceiling


def test_the_chart_draws_each_day_on_one_scale():
    daily = [{"date": f"2026-11-{d:02}", "codes_issued": d, "codes_redeemed": d // 2} for d in range(1, 11)]
    chart = daily_bars(daily)
    assert len(chart["bars"]) == 10 and chart["issued"] == 55 and chart["redeemed"] == 25
    tallest = chart["bars"][-1]
    assert tallest.issued_top == 8.0  # 10 of a scale of 10 reaches the top (TOP)
    assert [g["label"] for g in chart["grid"]] == ["0", "5", "10"]
    assert chart["labels"][0]["text"] == "11-01" and chart["labels"][-1]["text"] == "11-10"


def test_presets_are_whole_days_of_the_stores_calendar():
    from datetime import date

    today = date(2026, 3, 15)
    assert preset_days("7d", today) == (date(2026, 3, 9), today)
    assert preset_days("month", today) == (date(2026, 3, 1), today)
    assert preset_days("last-month", today) == (date(2026, 2, 1), date(2026, 2, 28))


def test_programs_are_listed_with_their_state(client, installed, db):  # noqa: F811
    welcome = db.scalars(select(Program).where(Program.shop_id == installed.id, Program.kind == "welcome")).one()
    welcome.active = True
    db.commit()
    page = open_page(client, session_token(SHOP))
    row = re.search(rf"<th scope=\"row\">{welcome.name}</th>.*?</tr>", page.text, re.S).group(0)
    assert '<span class="badge success">On</span>' in row


def test_what_needs_attention_links_to_the_page_that_deals_with_it(client, installed, db):  # noqa: F811
    issued_code(db, installed, "WELCOME-FAILED", status="failed")
    page = open_page(client, session_token(SHOP))
    link = re.search(r'could not be issued</h2>\s*<p>[^<]*<a href="([^"]+)">See the codes</a>', page.text)
    assert link and link.group(1).startswith("/admin/codes?") and "status=failed" in link.group(1)
    assert re.search(r'Welcome codes are off</h2>\s*<p>[^<]*<a href="/admin/programs\?[^"]*">Open Programs</a>',
                     page.text)


def test_the_scales_gridlines_are_whole_numbers():
    five = daily_bars([{"date": "2026-11-01", "codes_issued": 5, "codes_redeemed": 0}])
    assert [g["label"] for g in five["grid"]] == ["0", "5"]  # not 0, 2, 5 unevenly spaced
    one = daily_bars([{"date": "2026-11-01", "codes_issued": 0, "codes_redeemed": 0}])
    assert [g["label"] for g in one["grid"]] == ["0", "1"]


def test_custom_dates_show_as_such_in_the_range_menu(client, installed):  # noqa: F811
    page = open_page(client, session_token(SHOP), **{"from": "2026-11-01", "to": "2026-11-15"})
    assert '<option value="" selected>Custom dates</option>' in page.text
    assert '<option value="30d" selected>' not in open_page(client, session_token(SHOP), range="7d").text


def test_no_template_writes_an_inline_style():
    # The house style: one stylesheet, no inline styles (a Content-Security-Policy for styles stays possible).
    from app.config import ROOT

    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "app" / "templates").rglob("*.html")
                 if 'style="' in path.read_text()]
    assert offenders == []


@pytest.mark.parametrize(("value", "written"), [
    (0, "0"), (974852, "974,852"), ("20673813.07", "20,673,813.07"), ("-1234.50", "-1,234.50"), ("0.00", "0.00"),
    (None, "—"),
])
def test_counts_and_amounts_are_written_with_thousands_separators(app, value, written):
    assert app.jinja_env.filters["number"](value) == written
    if isinstance(value, str):
        rendered = app.jinja_env.from_string('{% from "components/format.html" import money %}{{ money(a) }}')
        assert rendered.render(a={"USD": value}) == f"{written} USD"
