"""Every referral setting in one place (``app.codes.referral_settings``): one object out, one validation in."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete

from app.codes import landing, pools, referral_settings
from app.codes.referral_settings import SETTINGS, settings_json, update_settings
from app.errors import BadRequest, InvalidChange, NotFound
from app.models import Program
from tests.helpers import make_shop, make_shop_with_programs, program_of

DEFAULTS = {"hold_days": 14, "void_refund_percent": 50, "first_order_only": True, "block_same_email": True,
            "rewards_per_advocate_per_month": 10, "friend_codes_per_link_per_day": 20,
            "friend_codes_per_address_per_hour": 5, "pool_size": 1000, "pool_low_water": 200, "pool_window_days": 7}


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def test_one_object_with_every_setting_at_its_default(db, shop):
    assert settings_json(db, shop.id) == DEFAULTS
    # The documented defaults are the columns' own.
    assert {name: setting.default for name, setting in SETTINGS.items()} == DEFAULTS
    for name, setting in SETTINGS.items():
        assert Program.__table__.c[name].default.arg == setting.default, name


def test_the_object_shown_is_the_object_taken_back(db, shop):
    assert update_settings(db, shop.id, settings_json(db, shop.id)) == DEFAULTS


@pytest.mark.parametrize(("name", "value"), [
    ("hold_days", 0), ("hold_days", 365), ("void_refund_percent", 0), ("void_refund_percent", 100),
    ("first_order_only", False), ("block_same_email", False), ("rewards_per_advocate_per_month", 0),
    ("rewards_per_advocate_per_month", 1000), ("friend_codes_per_link_per_day", 0),
    ("friend_codes_per_address_per_hour", 100_000), ("pool_size", 100_000), ("pool_low_water", 0),
    ("pool_window_days", 90),
])
def test_each_setting_lands_on_its_program(db, shop, name, value):
    update_settings(db, shop.id, {name: value})
    db.commit()
    kind = SETTINGS[name].kind
    assert getattr(program_of(db, shop, kind), name) == value
    other = "referral_friend" if kind == "referral_reward" else "referral_reward"
    assert getattr(program_of(db, shop, other), name) == DEFAULTS[name]  # the other program's column stays
    assert settings_json(db, shop.id)[name] == value


@pytest.mark.parametrize(("changes", "problem"), [
    ({"hold_days": -1}, "hold_days must be a whole number from 0 (reward at once) to 365 days, not -1"),
    ({"hold_days": 366}, "hold_days must be a whole number from 0 (reward at once) to 365 days, not 366"),
    ({"hold_days": True}, "hold_days must be a whole number from 0 (reward at once) to 365 days, not True"),
    ({"hold_days": "7"}, "hold_days must be a whole number from 0 (reward at once) to 365 days, not '7'"),
    ({"hold_days": 7.0}, "hold_days must be a whole number from 0 (reward at once) to 365 days, not 7.0"),
    ({"hold_days": None}, "hold_days must be a whole number from 0 (reward at once) to 365 days, not None"),
    ({"void_refund_percent": 101}, "void_refund_percent must be a whole number from 0 (any refund voids) to 100"),
    ({"rewards_per_advocate_per_month": 1001},
     "rewards_per_advocate_per_month must be a whole number from 0 (no cap) to 1000, not 1001"),
    ({"first_order_only": 1}, "first_order_only must be true or false, not 1"),
    ({"block_same_email": "false"}, "block_same_email must be true or false, not 'false'"),
    ({"block_same_email": None}, "block_same_email must be true or false, not None"),
    ({"friend_codes_per_link_per_day": -1},
     "friend_codes_per_link_per_day must be a whole number from 0 (no cap) to 100000, not -1"),
    ({"friend_codes_per_address_per_hour": False},
     "friend_codes_per_address_per_hour must be a whole number from 0 (no cap) to 100000, not False"),
    ({"pool_size": 0}, "pool_size must be 1 to 100,000 codes, not 0"),
    ({"pool_size": "many"}, "pool_size must be a whole number, not 'many'"),
    ({"pool_low_water": 1000}, "pool_low_water must be 0 or more and less than the pool size (1000), not 1000"),
    ({"pool_size": 100}, "pool_low_water must be 0 or more and less than the pool size (100), not 200"),
    ({"pool_window_days": 0}, "pool_window_days must be 1 to 90 days, not 0"),
    ({"active": True}, "unknown setting 'active' (the referral settings are hold_days, void_refund_percent,"),
    ({"size": 10, "per_link_per_day": 3}, "unknown settings 'size', 'per_link_per_day'"),
])
def test_every_rule_names_the_setting(db, shop, changes, problem):
    with pytest.raises(BadRequest, match=re.escape(problem)):
        update_settings(db, shop.id, changes)


def test_all_or_nothing_with_every_problem_at_once(db, shop):
    changes = {"hold_days": 3, "void_refund_percent": -5, "first_order_only": 0, "pool_size": 0,
               "friend_codes_per_link_per_day": "x", "block_same_email": False, "colour": "blue"}
    with pytest.raises(BadRequest) as refused:
        update_settings(db, shop.id, changes)
    problems = str(refused.value).split("; ")
    assert [p.split(" ", 1)[0] for p in problems] == [
        "unknown", "void_refund_percent", "first_order_only", "friend_codes_per_link_per_day", "pool_size"]
    assert "'colour'" in problems[0]
    db.rollback()
    assert settings_json(db, shop.id) == DEFAULTS  # hold_days and block_same_email were fine, and stayed


def test_each_problem_comes_with_the_setting_it_is_about(db, shop):
    changes = {"hold_days": -1, "first_order_only": 0, "pool_size": 0, "pool_low_water": -1,
               "pool_window_days": 0, "friend_codes_per_address_per_hour": "x", "colour": "blue"}
    with pytest.raises(InvalidChange) as refused:
        update_settings(db, shop.id, changes)
    assert str(refused.value) == "; ".join(text for _, text in refused.value.problems)
    assert [name for name, _ in refused.value.problems] == [
        None, "hold_days", "first_order_only", "friend_codes_per_address_per_hour", "pool_size", "pool_low_water",
        "pool_window_days"]
    assert all(text.startswith(name or "unknown setting") for name, text in refused.value.problems)


def test_a_pool_size_and_mark_changed_together_are_judged_together(db, shop):
    assert update_settings(db, shop.id, {"pool_size": 100, "pool_low_water": 10})["pool_low_water"] == 10


def test_the_old_doors_use_the_same_rules(db, shop):
    friend = program_of(db, shop, "referral_friend")
    for old, new in (({"per_link_per_day": -1}, {"friend_codes_per_link_per_day": -1}),
                     ({"per_address_per_hour": 2**40}, {"friend_codes_per_address_per_hour": 2**40})):
        with pytest.raises(BadRequest) as by_caps:
            landing.set_caps(db, friend, old)
        with pytest.raises(BadRequest) as by_settings:
            update_settings(db, shop.id, new)
        # Same rule, same words; only the setting's name differs.
        assert str(by_caps.value).split(" must ", 1)[1] == str(by_settings.value).split(" must ", 1)[1]
    with pytest.raises(BadRequest, match=re.escape("window_days must be 1 to 90 days, not 91")):
        pools.set_pool_settings(db, shop.id, friend.id, {"window_days": 91})
    with pytest.raises(BadRequest, match=re.escape("pool_window_days must be 1 to 90 days, not 91")):
        update_settings(db, shop.id, {"pool_window_days": 91})


def test_the_old_pool_door_names_a_range_problem_beside_a_type_problem(db, shop):
    friend = program_of(db, shop, "referral_friend")
    with pytest.raises(BadRequest) as refused:
        pools.set_pool_settings(db, shop.id, friend.id, {"size": "many", "window_days": 0})
    assert str(refused.value) == "size must be a whole number, not 'many'; window_days must be 1 to 90 days, not 0"


def test_a_change_is_the_shops_own(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    update_settings(db, shop.id, {"hold_days": 0, "pool_size": 5000})
    db.commit()
    assert settings_json(db, other.id) == DEFAULTS


@pytest.mark.parametrize("missing", [("referral_reward",), ("referral_friend",),
                                     ("referral_reward", "referral_friend")])
def test_a_store_without_its_referral_programs_is_told_so(db, rt, missing):
    shop = make_shop_with_programs(db, rt.cipher)
    db.execute(delete(Program).where(Program.shop_id == shop.id, Program.kind.in_(missing)))
    db.commit()
    expected = f"this store has no {' or '.join(missing)} program, so it has no referral settings"
    with pytest.raises(NotFound, match=re.escape(expected)):
        settings_json(db, shop.id)
    with pytest.raises(NotFound, match=re.escape(expected)):
        update_settings(db, shop.id, {"hold_days": 1})


def test_a_shop_with_no_programs_at_all(db, rt):
    bare = make_shop(db, rt.cipher, domain="bare.myshopify.com")
    with pytest.raises(NotFound, match="no referral_reward or referral_friend program"):
        settings_json(db, bare.id)


def test_every_setting_says_what_it_means_and_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Referral settings", 1)[1].split("\n## ", 1)[0]
    for name, setting in SETTINGS.items():
        assert setting.meaning
        assert f"`{name}`" in section, f"README's referral settings do not mention {name}"
    assert set(referral_settings.RANGES) | set(referral_settings.CAPS) | set(referral_settings.POOL) | {
        n for n, s in SETTINGS.items() if s.type == "bool"} == set(SETTINGS)
