"""Our codes live on each store, against Shopify's cap: in the metrics, the API and the CLI, with a warning."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import update

from app.codes import metrics
from app.codes.metrics import Period, codes_on_store, shop_metrics, store_usage
from app.db import utcnow
from app.models import IssuedCode
from tests.helpers import issued_code, make_shop_with_programs, session_token

NOVEMBER = Period(date(2026, 11, 1), date(2026, 11, 30))


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    shop = make_shop_with_programs(db, rt.cipher)
    for n in range(5):
        issued_code(db, shop, f"LIVE-{n}")  # created on the store (a discount gid) and attached
    issued_code(db, shop, "EXPIRED", status="expired")  # still on the store until the clean-up
    issued_code(db, shop, "REMOVED", status="expired")
    issued_code(db, shop, "RESERVED", status="reserved")
    db.execute(update(IssuedCode).where(IssuedCode.code == "REMOVED").values(removed_from_store_at=utcnow()))
    db.execute(update(IssuedCode).where(IssuedCode.code == "RESERVED").values(discount_gid=None))
    db.commit()
    return shop


def test_codes_on_the_store_are_those_created_there_and_not_removed(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    issued_code(db, other, "THEIRS")
    assert codes_on_store(db, [shop.id, other.id]) == {shop.id: 6, other.id: 1}
    assert store_usage(db, shop.id) == {"codes_on_store": 6, "cap": 20_000_000, "share_of_cap": 0.0, "warning": None}


def test_the_cap_is_the_reported_twenty_million_and_the_warning_starts_at_80_percent():
    assert metrics.STORE_CODE_CAP == 20_000_000 and metrics.CAP_WARNING_SHARE == 0.8
    assert metrics.cap_warning(15_999_999) is None
    warning = metrics.cap_warning(16_000_000)
    assert warning is not None and "16,000,000 OnceCode codes" in warning and "80.0 %" in warning


def test_the_metrics_carry_the_stores_count_and_warn_near_the_cap(db, shop, monkeypatch):
    assert shop_metrics(db, shop.id, NOVEMBER)["store"]["warning"] is None
    monkeypatch.setattr(metrics, "STORE_CODE_CAP", 7)  # 6 of 7: 85.7 %
    store = shop_metrics(db, shop.id, NOVEMBER, daily=False)["store"]
    assert store["codes_on_store"] == 6 and store["cap"] == 7 and store["share_of_cap"] == 0.8571
    assert "85.7 % of the 7 codes Shopify lets a store hold" in store["warning"]


def test_the_api_serves_the_count_and_the_warning(client, shop, monkeypatch):
    monkeypatch.setattr(metrics, "STORE_CODE_CAP", 7)
    body = client.get("/api/metrics", headers={"Authorization": f"Bearer {session_token(shop.domain)}"}).get_json()
    assert body["store"]["codes_on_store"] == 6 and body["store"]["warning"].startswith("6 OnceCode codes")


def test_the_cli_metrics_print_the_count_and_the_warning(runner, shop, monkeypatch):
    quiet = runner.invoke(args=["metrics", shop.domain])
    assert quiet.exit_code == 0 and "codes on the store now" in quiet.output and "6 of Shopify's 20,000,000 (0.0 %)" \
        in quiet.output and "WARNING" not in quiet.output
    monkeypatch.setattr(metrics, "STORE_CODE_CAP", 7)
    loud = runner.invoke(args=["metrics", shop.domain])
    assert loud.exit_code == 0 and "WARNING: 6 OnceCode codes are on the store, 85.7 %" in loud.output
    assert "STORE_CLEANUP_GRACE_DAYS" in loud.output


def test_the_cli_shops_list_shows_each_stores_count(runner, db, rt, shop, monkeypatch):
    make_shop_with_programs(db, rt.cipher, domain="empty.myshopify.com")
    lines = runner.invoke(args=["shops", "list"]).output.splitlines()
    assert [line.split("\t")[-1] for line in lines] == ["6 codes on the store", "0 codes on the store"]
    monkeypatch.setattr(metrics, "STORE_CODE_CAP", 7)
    demo = runner.invoke(args=["shops", "list"]).output.splitlines()[0]
    assert demo.endswith("6 codes on the store (WARNING: 85.7 % of Shopify's cap of 7)")


def test_pages_may_read_the_count_of_codes_on_the_store_a_minute_old_the_api_counts_afresh(db, rt):
    from app.codes.metrics import STORE_USAGE_SECONDS, store_usage
    from tests.helpers import issued_code, make_shop_with_programs

    shop = make_shop_with_programs(db, rt.cipher, domain="usage.myshopify.com")
    issued_code(db, shop, "WELCOME-ONE")
    assert store_usage(db, shop.id, rt.redis)["codes_on_store"] == 1
    issued_code(db, shop, "WELCOME-TWO")
    assert store_usage(db, shop.id, rt.redis)["codes_on_store"] == 1  # the cached count, for a minute
    assert 0 < rt.redis.ttl(f"oncecode:store-usage:{shop.id}") <= STORE_USAGE_SECONDS
    assert store_usage(db, shop.id)["codes_on_store"] == 2  # without the cache: counted now
    rt.redis.delete(f"oncecode:store-usage:{shop.id}")
    assert store_usage(db, shop.id, rt.redis)["codes_on_store"] == 2
