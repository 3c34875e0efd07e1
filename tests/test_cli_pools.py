"""``flask referrals pool|top-up|pool-settings``: the friend code pool from the command line."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from app.codes import pools
from app.models import CodePool, PoolCode, Program
from app.queues import job_status, pool_top_up_job_id
from tests.codes.test_pool_take import a_pool
from tests.helpers import make_shop_with_programs, program_of

SHOP = "demo.myshopify.com"


@pytest.fixture
def friend(rt, db):
    shop = make_shop_with_programs(db, rt.cipher)
    program = program_of(db, shop, "referral_friend")
    program.active = True
    db.commit()
    return program


def test_pool_shows_counts_window_and_points(runner, rt, db, friend):
    pool = a_pool(db, friend, 5)
    db.execute(update(CodePool).where(CodePool.id == pool.id).values(points_spent=12))
    db.execute(update(PoolCode).where(PoolCode.code == f"FRIEND-{pool.id}-00000").values(status="handed_out"))
    db.execute(update(PoolCode).where(PoolCode.code == f"FRIEND-{pool.id}-00001").values(status="failed"))
    db.commit()
    result = runner.invoke(args=["referrals", "pool", SHOP])
    assert result.exit_code == 0, result.output
    lines = dict(re.fullmatch(r"(\S.*?)\s{2,}(.*)", line).groups() for line in result.output.splitlines()
                 if not line.startswith("pool "))
    assert (lines["available"], lines["handed out"], lines["failed"]) == ("3", "1", "1")
    assert "points spent" in result.output and "12 (3.0 a code)" in result.output
    assert "current window" in result.output and "UTC" in result.output
    assert pools.pool_status(db, friend.shop_id, friend.id)["handed_out"] == 1


def test_top_up_queues_the_job(runner, rt, db, friend):
    result = runner.invoke(args=["referrals", "top-up", SHOP])
    assert result.exit_code == 0 and "top-up queued" in result.output
    assert job_status(rt.redis, pool_top_up_job_id(friend.shop_id, friend.id)).value == "queued"
    again = runner.invoke(args=["referrals", "top-up", SHOP])
    assert "already queued" in again.output


def test_top_up_of_a_program_that_is_off_is_refused(runner, rt, db, friend):
    friend.active = False
    db.commit()
    result = runner.invoke(args=["referrals", "top-up", SHOP])
    assert result.exit_code == 1 and "switch it on first" in result.output


def test_pool_settings_are_validated_like_programs(runner, rt, db, friend):
    ok = runner.invoke(args=["referrals", "pool-settings", SHOP, "size=5000", "low_water=1000"])
    assert ok.exit_code == 0 and "top up below 1000 to 5000" in ok.output
    bad = runner.invoke(args=["referrals", "pool-settings", SHOP, "size=10", "window_days=0", "colour=blue"])
    assert bad.exit_code == 2
    assert "unknown setting 'colour'" in bad.output
    db.expire_all()
    assert db.get(Program, friend.id).pool_size == 5000  # the refused call changed nothing


def test_a_unicode_digit_is_a_usage_error_not_a_traceback(runner, friend):
    result = runner.invoke(args=["referrals", "pool-settings", SHOP, "size=²"])
    assert result.exit_code == 2 and "size" in result.output  # int("²") used to raise ValueError: exit 1


@pytest.mark.parametrize(("changes", "problem"), [
    ({"size": 0}, "size must be 1 to 100,000 codes"),
    ({"low_water": 1000}, "low_water must be 0 or more and less than the size (1000)"),
    ({"window_days": 91}, "window_days must be 1 to 90 days"),
    ({"size": "many"}, "size must be a whole number, not 'many'"),
])
def test_pool_setting_rules(rt, db, friend, changes, problem):
    from app.errors import BadRequest

    with pytest.raises(BadRequest, match=re.escape(problem)):
        pools.set_pool_settings(db, friend.shop_id, friend.id, changes)


def test_unknown_shop(runner):
    result = runner.invoke(args=["referrals", "pool", "nowhere.myshopify.com"])
    assert result.exit_code == 1 and "no shop 'nowhere.myshopify.com'" in result.output


def test_only_the_referral_friend_program_has_pool_settings(rt, db, friend):
    from app.errors import BadRequest

    welcome = program_of(db, db.get(Program, friend.id).shop, "welcome")
    with pytest.raises(BadRequest, match="only the referral_friend program has a code pool, not welcome"):
        pools.set_pool_settings(db, friend.shop_id, welcome.id, {"size": 10})


def test_caps_shows_sets_and_lists_blocks(runner, db, friend):
    from app.codes import referrals
    from app.db import utcnow
    from app.models import ReferralBlock

    shown = runner.invoke(args=["referrals", "caps", SHOP])
    assert shown.exit_code == 0
    assert "friend codes per link per day: 20; per client address per hour: 5" in shown.output
    assert "no blocks recorded" in shown.output
    link, _ = referrals.create_link(db, friend.shop_id, 42)
    db.add(ReferralBlock(shop_id=friend.shop_id, link_id=link.id, reason="address_hourly_cap", at=utcnow()))
    db.commit()
    changed = runner.invoke(args=["referrals", "caps", SHOP, "per_link_per_day=0", "per_address_per_hour=9"])
    assert changed.exit_code == 0 and "per link per day: off; per client address per hour: 9" in changed.output
    assert f"link {link.id}: address_hourly_cap" in changed.output
    bad = runner.invoke(args=["referrals", "caps", SHOP, "per_link_per_day=-2", "colour=blue"])
    assert bad.exit_code == 2 and "per_link_per_day must be a whole number from 0" in bad.output
    assert "unknown cap 'colour'" in bad.output
