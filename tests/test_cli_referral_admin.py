"""``flask referrals settings|list``: every referral setting, and the referrals, from the command line."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import delete

from app.models import Program
from tests.codes.test_referral_list import a_referral
from tests.codes.test_referral_settings import DEFAULTS
from tests.helpers import issued_code, make_shop_with_programs, program_of

SHOP = "demo.myshopify.com"


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def invoke(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(args=["referrals", *args])


def shown(output: str) -> dict[str, str]:
    """``  name  value  meaning`` lines as name → value."""
    return {m.group(1): m.group(2) for line in output.splitlines()
            if (m := re.fullmatch(r"[ *] (\w+)\s+(\S+)\s+.+", line))}


def test_settings_shows_every_setting_with_its_meaning(runner, shop):
    result = invoke(runner, "settings", SHOP)
    assert result.exit_code == 0, result.output
    assert shown(result.output) == {name: str(value).lower() for name, value in DEFAULTS.items()}
    assert "days a referred order is held before the advocate's reward; 0 = at once" in result.output


def test_settings_changes_with_booleans_as_true_or_false(runner, db, shop):
    result = invoke(runner, "settings", SHOP, "hold_days=0", "first_order_only=false", "pool_size=5000")
    assert result.exit_code == 0, result.output
    values = shown(result.output)
    assert (values["hold_days"], values["first_order_only"], values["pool_size"]) == ("0", "false", "5000")
    assert "* hold_days" in result.output and "(* set: hold_days, first_order_only, pool_size)" in result.output
    assert program_of(db, shop, "referral_reward").first_order_only is False
    assert program_of(db, shop, "referral_friend").pool_size == 5000
    back = invoke(runner, "settings", SHOP, "first_order_only=true")
    assert back.exit_code == 0 and shown(back.output)["first_order_only"] == "true"


@pytest.mark.parametrize(("assignments", "problems"), [
    (["hold_days=²"], ["hold_days must be a whole number from 0 (reward at once) to 365 days, not '²'"]),
    (["first_order_only=1"], ["first_order_only must be true or false, not 1"]),
    (["block_same_email=yes"], ["block_same_email must be true or false, not 'yes'"]),
    (["hold_days=true"], ["hold_days must be a whole number from 0 (reward at once) to 365 days, not True"]),
    (["hold_days=-1", "pool_size=0", "colour=blue"],
     ["unknown setting 'colour'", "hold_days must be a whole number", "pool_size must be 1 to 100,000 codes"]),
    (["hold_days"], ["'hold_days' is not SETTING=VALUE"]),
])
def test_bad_settings_are_a_usage_error_naming_every_problem(runner, db, shop, assignments, problems):
    result = invoke(runner, "settings", SHOP, *assignments)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1
    for problem in problems:
        assert problem in error[0]
    assert shown(invoke(runner, "settings", SHOP).output)["hold_days"] == "14"  # nothing changed


def test_settings_of_an_unknown_shop_or_one_without_referral_programs(runner, db, shop):
    unknown = invoke(runner, "settings", "nowhere.myshopify.com")
    assert unknown.exit_code == 1 and "no shop 'nowhere.myshopify.com'" in unknown.output
    db.execute(delete(Program).where(Program.shop_id == shop.id, Program.kind == "referral_reward"))
    db.commit()
    bare = invoke(runner, "settings", SHOP)
    assert bare.exit_code == 1
    assert f"Error: {SHOP}: this store has no referral_reward program" in bare.output


def test_list_is_a_table_newest_first(runner, db, shop):
    reward = issued_code(db, shop, "REWARD-XYZ", kind="referral_reward")
    rewarded = a_referral(db, shop, advocate=42, status="rewarded", reward_code_id=reward.id)
    blocked = a_referral(db, shop, advocate=43, status="blocked", reason="self_referral")
    result = invoke(runner, "list", SHOP)
    assert result.exit_code == 0, result.output
    header, first, second = result.output.splitlines()
    assert header.split() == ["ID", "STATUS", "ORDER", "TOTAL", "FRIEND", "CODE", "LINK", "ADVOCATE", "ORDERED",
                              "HOLD", "UNTIL", "REWARD", "WHY"]
    assert first.split()[:7] == [str(blocked.id), "blocked", blocked.order_name, "80.00", "EUR",
                                 blocked.friend_code, str(blocked.link_id)]
    assert first.endswith("the friend's order was placed by the advocate themselves")
    assert second.split()[:2] == [str(rewarded.id), "rewarded"] and "REWARD-XYZ" in second
    # The columns line up.
    assert first.index(blocked.order_name) == header.index("ORDER") == second.index(rewarded.order_name)


def test_list_filters_and_limit(runner, db, shop):
    held = a_referral(db, shop, advocate=42)
    voided = a_referral(db, shop, advocate=43, status="voided", reason="order_cancelled")

    def listed(*options: str) -> list[str]:
        result = invoke(runner, "list", SHOP, *options)
        assert result.exit_code == 0, result.output
        return [line.split()[0] for line in result.output.splitlines()[1:]]

    assert listed("--status", "voided") == [str(voided.id)]
    assert listed("--customer", "42") == [str(held.id)]
    assert listed("--link", str(voided.link_id)) == [str(voided.id)]
    assert listed("--limit", "1") == [str(voided.id)]
    empty = invoke(runner, "list", SHOP, "--status", "rewarded")
    assert empty.exit_code == 0 and empty.output.strip() == f"{SHOP} has no referrals like that"


def test_list_of_a_shop_without_referrals(runner, shop):
    result = invoke(runner, "list", SHOP)
    assert result.exit_code == 0 and result.output.strip() == f"{SHOP} has no referrals yet"


@pytest.mark.parametrize(("options", "problem"), [
    (["--status", "open"], "Invalid value for '--status'"),
    (["--link", "²"], "--link must be an id"),
    (["--link", "0"], "--link must be an id"),
    (["--customer", "abc"], "--customer must be a Shopify customer id"),
    (["--limit", "0"], "--limit must be a whole number from 1 to 10000"),
])
def test_list_refuses_bad_options_as_usage_errors(runner, shop, options, problem):
    result = invoke(runner, "list", SHOP, *options)
    assert result.exit_code == 2 and problem in result.output, result.output


def test_list_of_an_unknown_shop(runner):
    result = invoke(runner, "list", "nowhere.myshopify.com")
    assert result.exit_code == 1 and "no shop 'nowhere.myshopify.com'" in result.output
