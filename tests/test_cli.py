"""The operator CLI for programs: `flask programs list` and `flask programs set`."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app import lifecycle
from app.codes.programs import update_program
from app.errors import BadRequest
from app.models import Program, Shop
from tests.helpers import make_shop, make_shop_with_programs, program_of

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, domain=SHOP)


def test_list_shows_a_readable_table(runner, shop):
    result = runner.invoke(args=["programs", "list", SHOP])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split()[:4] == ["ID", "KIND", "NAME", "ACTIVE"]
    assert [row.split()[1] for row in rows] == ["welcome", "referral_friend", "referral_reward"]
    welcome = rows[0]
    for cell in ("Welcome code", " off ", "10.00 %", "30 days", " yes ", "shipping", "WELCOME-"):
        assert cell in welcome
    assert "15.00 %" in rows[2] and "60 days" in rows[2]
    # columns line up: every row starts its KIND column where the header does
    assert {row.index(kind) for row, kind in zip(rows, ["welcome", "referral_friend", "referral_reward"],
                                                  strict=True)} == {header.index("KIND")}


def test_list_without_programs_says_how_to_create_them(runner, db, rt):
    make_shop(db, rt.cipher, domain=OTHER)
    result = runner.invoke(args=["programs", "list", OTHER])
    assert result.exit_code == 0 and "flask shops setup other.myshopify.com" in result.output


@pytest.mark.parametrize("command", [["list", "nowhere.myshopify.com"],
                                     ["set", "nowhere.myshopify.com", "welcome", "active=true"]])
def test_unknown_shop_is_an_error(runner, shop, command):
    result = runner.invoke(args=["programs", *command])
    assert result.exit_code == 1 and "no shop 'nowhere.myshopify.com'" in result.output


def test_set_changes_the_program_and_prints_it(runner, db, shop):
    result = runner.invoke(args=["programs", "set", SHOP, "welcome", "value=15", "active=true",
                                 "lock_to_customer=false", "code_prefix=HELLO-", "expires_after_days=none"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["value"], shown["active"], shown["lock_to_customer"], shown["expires_after_days"]) == (
        "15.00", True, False, None)
    assert shown["code_format"]["example"].startswith("HELLO-")
    program = program_of(db, shop)
    assert (program.value, program.active, program.lock_to_customer, program.code_prefix,
            program.expires_after_days) == (Decimal("15.00"), True, False, "HELLO-", None)


@pytest.mark.parametrize(("assignment", "field", "expected"), [
    ("active=true", "active", True),
    ("active=YES", "active", True),
    ("active=on", "active", True),
    ("lock_to_customer=no", "lock_to_customer", False),
    ("combines_with_order=1", "combines_with_order", True),
    ("combines_with_shipping=off", "combines_with_shipping", False),
    ("value=12.50", "value", Decimal("12.50")),
    ("minimum_subtotal=25", "minimum_subtotal", Decimal("25.00")),
    ("minimum_subtotal=none", "minimum_subtotal", None),
    ("expires_after_days=14", "expires_after_days", 14),
    ("expires_after_days=null", "expires_after_days", None),
    ("expires_after_days=", "expires_after_days", None),
    ("code_length=12", "code_length", 12),
    ("code_alphabet=abcdefghjkmnpqrstuvwxyz", "code_alphabet", "ABCDEFGHJKMNPQRSTUVWXYZ"),
    ("code_pattern=####-####-##", "code_pattern", "####-####-##"),
    ("code_pattern=none", "code_pattern", None),
    ("name=Hello = welcome", "name", "Hello = welcome"),  # only the first '=' separates
])
def test_set_converts_cli_words_to_field_types(runner, db, shop, assignment, field, expected):
    result = runner.invoke(args=["programs", "set", SHOP, "welcome", assignment])
    assert result.exit_code == 0, result.output
    assert getattr(program_of(db, shop), field) == expected


@pytest.mark.parametrize(("assignments", "changes"), [
    (["value=0"], {"value": "0"}),
    (["value=12.345"], {"value": "12.345"}),
    (["active=maybe"], {"active": "maybe"}),
    (["expires_after_days=soon"], {"expires_after_days": "soon"}),
    (["expires_after_days=4000"], {"expires_after_days": 4000}),
    (["name="], {"name": ""}),
    (["code_length=8"], {"code_length": 8}),
    (["code_prefix=no spaces"], {"code_prefix": "no spaces"}),
    (["value_type=free_shipping", "value=5"], {"value_type": "free_shipping", "value": "5"}),
    (["colour=red"], {"colour": "red"}),
    (["kind=manual"], {"kind": "manual"}),
])
def test_set_refuses_with_the_same_messages_as_the_api(runner, db, shop, assignments, changes):
    program = program_of(db, shop)
    with pytest.raises(BadRequest) as refused:
        update_program(db, shop.id, program.id, changes)
    db.rollback()

    result = runner.invoke(args=["programs", "set", SHOP, "welcome", *assignments])
    assert result.exit_code == 1
    assert f"Error: {refused.value}" in result.output
    after = program_of(db, shop)
    assert (after.active, after.value, after.name, after.code_length) == (False, Decimal("10.00"),
                                                                          "Welcome code", 10)


@pytest.mark.parametrize(("args", "message"), [
    (["welcome", "value"], "expected FIELD=VALUE, got 'value'"),
    (["welcome", "=15"], "expected FIELD=VALUE, got '=15'"),
    (["welcome", "value=10", "value=15"], "value is given twice"),
    (["birthday", "active=true"], "'birthday' is neither a program kind"),
    (["manual", "active=true"], "demo.myshopify.com has no program manual"),
    (["999999", "active=true"], "demo.myshopify.com has no program 999999"),
])
def test_set_explains_bad_arguments(runner, shop, args, message):
    result = runner.invoke(args=["programs", "set", SHOP, *args])
    assert result.exit_code == 1 and message in result.output


def test_set_needs_at_least_one_change(runner, shop):
    result = runner.invoke(args=["programs", "set", SHOP, "welcome"])
    assert result.exit_code == 2 and "FIELD=VALUE" in result.output


def test_manual_programs_are_set_by_id(runner, db, shop):
    manual = [Program(shop_id=shop.id, kind="manual", name=f"Manual {n}", value_type="fixed_amount",
                      value=Decimal(5)) for n in (1, 2)]
    db.add_all(manual)
    db.commit()

    ambiguous = runner.invoke(args=["programs", "set", SHOP, "manual", "active=true"])
    assert ambiguous.exit_code == 1 and "has 2 manual programs; give the id instead" in ambiguous.output
    by_id = runner.invoke(args=["programs", "set", SHOP, str(manual[1].id), "value=7.5"])
    assert by_id.exit_code == 0, by_id.output
    db.expire_all()
    assert (manual[0].value, manual[1].value) == (Decimal("5.00"), Decimal("7.50"))


def test_set_cannot_reach_another_shops_program_by_id(runner, db, rt, shop):
    other = make_shop(db, rt.cipher, domain=OTHER)
    lifecycle.create_default_programs(db, other.id)
    db.commit()
    theirs = program_of(db, other)
    result = runner.invoke(args=["programs", "set", SHOP, str(theirs.id), "active=true"])
    assert result.exit_code == 1 and f"has no program {theirs.id}" in result.output
    assert program_of(db, other).active is False
