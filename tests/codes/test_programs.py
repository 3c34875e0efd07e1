"""Programs: the defaults, every rule a change must pass, normalisation, and shop scoping."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from app import lifecycle
from app.codes.generator import DEFAULT_ALPHABET, CodeFormat
from app.codes.programs import FIELDS, code_format, format_sample, program_json, update_program
from app.errors import BadRequest, InvalidChange, NotFound
from app.models import IssuedCode, Program, Shop
from tests.helpers import make_shop, make_shop_with_programs, program_of

SHOP = "demo.myshopify.com"
OTHER = "other.myshopify.com"


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, domain=SHOP)


def stored(program: Program) -> dict:
    """Everything the merchant can see of a program, but the freshly generated example."""
    shown = program_json(program)
    del shown["code_format"]["example"]
    return shown


# --- the defaults -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", lifecycle.DEFAULT_PROGRAMS, ids=lambda spec: spec["kind"])
def test_default_programs_start_off_and_can_issue_a_million_codes(db, shop, spec):
    program = program_of(db, shop, spec["kind"])
    assert program.active is False
    assert (program.code_alphabet, program.code_pattern) == (DEFAULT_ALPHABET, None)
    fmt = code_format(program)
    fmt.check(volume=1_000_000)
    assert re.fullmatch(re.escape(spec["code_prefix"]) + f"[{DEFAULT_ALPHABET}]{{10}}", fmt.generate())


def test_program_json_shows_what_the_merchant_can_change(db, shop):
    program = program_of(db, shop)
    shown = program_json(program)
    example = shown["code_format"].pop("example")
    assert shown == {
        "id": program.id, "kind": "welcome", "name": "Welcome code", "active": False,
        "value_type": "percentage", "value": "10.00", "minimum_subtotal": None, "expires_after_days": 30,
        "lock_to_customer": True,
        "combines_with": {"product_discounts": False, "order_discounts": False, "shipping_discounts": True},
        "code_format": {"prefix": "WELCOME-", "length": 10, "alphabet": DEFAULT_ALPHABET, "pattern": None,
                        "entropy_bits": 49.5},
        "redirect_path": None,
    }
    assert re.fullmatch(f"WELCOME-[{DEFAULT_ALPHABET}]{{10}}", example)
    assert len({program_json(program)["code_format"]["example"] for _ in range(5)}) == 5  # generated afresh


# --- accepted changes -------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "expected"), [
    ({}, {}),
    ({"value": 15}, {"value": Decimal("15.00")}),
    ({"value": "12.5"}, {"value": Decimal("12.50")}),
    ({"value": 99.99}, {"value": Decimal("99.99")}),
    ({"value": "100"}, {"value": Decimal("100.00")}),
    ({"value": " 0.01 "}, {"value": Decimal("0.01")}),
    ({"value_type": "fixed_amount", "value": "5.25"}, {"value_type": "fixed_amount", "value": Decimal("5.25")}),
    ({"value_type": "fixed_amount", "value": 250}, {"value_type": "fixed_amount", "value": Decimal("250.00")}),
    ({"value_type": "free_shipping"}, {"value_type": "free_shipping", "value": Decimal("0.00")}),
    ({"value_type": "free_shipping", "value": "0"}, {"value_type": "free_shipping", "value": Decimal("0.00")}),
    ({"minimum_subtotal": "50"}, {"minimum_subtotal": Decimal("50.00")}),
    ({"minimum_subtotal": 0.5}, {"minimum_subtotal": Decimal("0.50")}),
    ({"minimum_subtotal": None}, {"minimum_subtotal": None}),
    ({"expires_after_days": None}, {"expires_after_days": None}),
    ({"expires_after_days": 1}, {"expires_after_days": 1}),
    ({"expires_after_days": 3650}, {"expires_after_days": 3650}),
    ({"active": True, "lock_to_customer": False}, {"active": True, "lock_to_customer": False}),
    ({"combines_with_product": True, "combines_with_order": True, "combines_with_shipping": False},
     {"combines_with_product": True, "combines_with_order": True, "combines_with_shipping": False}),
    ({"name": "  Hello there  "}, {"name": "Hello there"}),
    ({"name": "n" * 255}, {"name": "n" * 255}),
    ({"code_prefix": " hello- "}, {"code_prefix": "HELLO-"}),
    ({"code_prefix": ""}, {"code_prefix": ""}),
    ({"code_prefix": "a_b-c9"}, {"code_prefix": "A_B-C9"}),
    ({"code_length": 9}, {"code_length": 9}),
    ({"code_length": 32}, {"code_length": 32}),
    ({"code_alphabet": "abcdefghjkmnpqrstuvwxyz"}, {"code_alphabet": "ABCDEFGHJKMNPQRSTUVWXYZ"}),
    ({"code_alphabet": "0123456789", "code_length": 13}, {"code_alphabet": "0123456789", "code_length": 13}),
    ({"code_pattern": "####-####-##"}, {"code_pattern": "####-####-##"}),
    ({"code_pattern": "ab-#####-#####"}, {"code_pattern": "AB-#####-#####"}),
    ({"code_pattern": ""}, {"code_pattern": None}),
    ({"code_pattern": None}, {"code_pattern": None}),
])
def test_valid_changes_are_stored_normalised(db, shop, changes, expected):
    program = program_of(db, shop)
    before = {name: getattr(program, name) for name in FIELDS}
    update_program(db, shop.id, program.id, changes)
    db.commit()

    program = program_of(db, shop)
    after = {name: getattr(program, name) for name in FIELDS}
    assert after == before | expected
    code_format(program).check(volume=1_000_000)


def test_a_pattern_shapes_the_next_codes(db, shop):
    program = update_program(db, shop.id, program_of(db, shop).id,
                             {"code_prefix": "hi-", "code_pattern": "##a##-######"})
    db.commit()
    assert re.fullmatch(f"HI-[{DEFAULT_ALPHABET}]{{2}}A[{DEFAULT_ALPHABET}]{{2}}-[{DEFAULT_ALPHABET}]{{6}}",
                        program_json(program)["code_format"]["example"])


def test_switching_back_from_free_shipping_needs_a_value(db, shop):
    program = program_of(db, shop)
    update_program(db, shop.id, program.id, {"value_type": "free_shipping"})
    with pytest.raises(BadRequest, match=re.escape("value must be more than 0 and at most 100 for a percentage")):
        update_program(db, shop.id, program.id, {"value_type": "percentage"})
    update_program(db, shop.id, program.id, {"value_type": "percentage", "value": 20})
    assert (program.value_type, program.value) == ("percentage", Decimal("20.00"))


def test_a_change_leaves_codes_already_issued_alone(db, shop):
    program = program_of(db, shop)
    db.add(IssuedCode(shop_id=shop.id, program_id=program.id, code="WELCOME-ABCDEFGHJK",
                      idempotency_key="welcome:1:1", status="attached"))
    db.commit()
    update_program(db, shop.id, program.id, {"code_prefix": "NEW-", "code_length": 12, "value": 50})
    db.commit()
    db.expire_all()
    assert db.scalar(select(IssuedCode.code)) == "WELCOME-ABCDEFGHJK"


# --- refusals ---------------------------------------------------------------------------------

MONEY = "less than 10,000,000,000"


@pytest.mark.parametrize(("changes", "message"), [
    # fields that do not exist or cannot change
    ({"colour": "red"}, "unknown field 'colour' (the fields that can be changed are name, active, value_type"),
    ({"colour": 1, "size": 2}, "unknown fields 'colour', 'size' (the fields that can be changed are"),
    ({"combines_with": {"product_discounts": True}}, "unknown field 'combines_with'"),
    ({"kind": "manual"}, "kind cannot be changed"),
    ({"id": 5}, "id cannot be changed"),
    # name
    ({"name": ""}, "name must be 1 to 255 characters"),
    ({"name": "   "}, "name must be 1 to 255 characters"),
    ({"name": "n" * 256}, "name must be 1 to 255 characters"),
    ({"name": 5}, "name must be a string, not 5"),
    ({"name": None}, "name cannot be empty"),
    # booleans are JSON booleans, nothing truthy
    ({"active": "true"}, "active must be true or false, not 'true'"),
    ({"active": 1}, "active must be true or false, not 1"),
    ({"lock_to_customer": None}, "lock_to_customer cannot be empty"),
    ({"combines_with_product": "yes"}, "combines_with_product must be true or false, not 'yes'"),
    ({"combines_with_order": 0}, "combines_with_order must be true or false, not 0"),
    ({"combines_with_shipping": []}, "combines_with_shipping must be true or false, not []"),
    # value type and value
    ({"value_type": "bogo"}, "value_type must be one of percentage, fixed_amount, free_shipping, not 'bogo'"),
    ({"value_type": None}, "value_type cannot be empty"),
    ({"value": 0}, "value must be more than 0 and at most 100 for a percentage, not 0"),
    ({"value": "100.01"}, "value must be more than 0 and at most 100 for a percentage, not 100.01"),
    ({"value": -5}, "value must be more than 0 and at most 100 for a percentage, not -5"),
    ({"value": "12.345"}, "value may have at most 2 decimal places, not 12.345"),
    ({"value": "ten"}, "value must be a number such as 10 or 12.50, not 'ten'"),
    ({"value": "12,50"}, "value must be a number such as 10 or 12.50, not '12,50'"),
    ({"value": True}, "value must be a number such as 10 or 12.50, not True"),
    ({"value": "NaN"}, "value must be a number such as 10 or 12.50, not 'NaN'"),
    ({"value": float("inf")}, "value must be a number such as 10 or 12.50, not inf"),
    ({"value": [10]}, "value must be a number such as 10 or 12.50, not [10]"),
    ({"value": None}, "value cannot be empty"),
    ({"value_type": "fixed_amount", "value": 0}, f"value must be more than 0 for fixed_amount and {MONEY}, not 0"),
    ({"value_type": "fixed_amount", "value": "-1"}, f"value must be more than 0 for fixed_amount and {MONEY}"),
    ({"value_type": "fixed_amount", "value": "1e10"}, f"value must be more than 0 for fixed_amount and {MONEY}"),
    ({"value_type": "fixed_amount", "value": "5.555"}, "value may have at most 2 decimal places, not 5.555"),
    ({"value_type": "fixed_amount", "value": "0.001"}, "value may have at most 2 decimal places, not 0.001"),
    ({"value_type": "free_shipping", "value": 5}, "value must be 0 (or left out) for free_shipping, not 5"),
    # minimum subtotal
    ({"minimum_subtotal": 0}, f"minimum_subtotal must be none (no minimum) or more than 0 and {MONEY}, not 0"),
    ({"minimum_subtotal": "-20"}, f"minimum_subtotal must be none (no minimum) or more than 0 and {MONEY}"),
    ({"minimum_subtotal": "10.001"}, "minimum_subtotal may have at most 2 decimal places, not 10.001"),
    ({"minimum_subtotal": "fifty"}, "minimum_subtotal must be a number such as 10 or 12.50, not 'fifty'"),
    # expiry
    ({"expires_after_days": 0}, "expires_after_days must be none (codes never expire) or 1 to 3650 days, not 0"),
    ({"expires_after_days": 3651}, "expires_after_days must be none (codes never expire) or 1 to 3650 days"),
    ({"expires_after_days": 1.5}, "expires_after_days must be a whole number or null, not 1.5"),
    ({"expires_after_days": "30"}, "expires_after_days must be a whole number or null, not '30'"),
    ({"expires_after_days": True}, "expires_after_days must be a whole number or null, not True"),
    # code format: each problem named by the field(s) changed, with the generator's reason
    ({"code_length": 5}, "code_length must be 6 to 32 random characters, not 5"),
    ({"code_length": 33}, "code_length must be 6 to 32 random characters, not 33"),
    ({"code_length": "12"}, "code_length must be a whole number, not '12'"),
    ({"code_length": None}, "code_length cannot be empty"),
    ({"code_length": 8}, "code_length: codes would be guessable: 8 random characters from 31 give 39.6 bits, "
                         "at least 40 are needed; use at least 9 random characters"),
    ({"code_alphabet": "ABCDEF"}, "code_alphabet: codes would be guessable"),
    ({"code_alphabet": "AB", "code_length": 32}, "code_length, code_alphabet: codes would be guessable"),
    ({"code_alphabet": "AAB"}, "code_alphabet: the alphabet must be at least 2 distinct characters A-Z and 0-9"),
    ({"code_alphabet": "aA"}, "code_alphabet: the alphabet must be at least 2 distinct characters"),
    ({"code_alphabet": "ABC!"}, "code_alphabet: the alphabet must be at least 2 distinct characters"),
    ({"code_alphabet": None}, "code_alphabet cannot be empty"),
    ({"code_prefix": "HELLO THERE"}, "code_prefix: the prefix may hold up to 16 characters A-Z, 0-9, '-' and '_'"),
    ({"code_prefix": "P" * 17}, "code_prefix: the prefix may hold up to 16 characters"),
    ({"code_prefix": 7}, "code_prefix must be a string, not 7"),
    ({"code_pattern": "----"}, "code_pattern: the pattern needs # for each random character"),
    ({"code_pattern": "####-####"}, "code_pattern: codes would be guessable: 8 random characters"),
    ({"code_pattern": "###.######"}, "code_pattern: the pattern needs # for each random character"),
    ({"code_pattern": "#" * 41}, "code_pattern: codes would be 49 characters long"),
    ({"code_prefix": "x", "code_pattern": "##"}, "code_prefix, code_pattern: codes would be guessable"),
])
def test_invalid_changes_are_refused_naming_the_field_and_the_rule(db, shop, changes, message):
    program = program_of(db, shop)
    before = stored(program)
    with pytest.raises(BadRequest) as refused:
        update_program(db, shop.id, program.id, changes)
    assert message in str(refused.value)
    db.rollback()
    assert stored(program_of(db, shop)) == before


def test_code_format_refusals_say_a_program_needs_a_million_codes(db, shop):
    with pytest.raises(BadRequest, match=re.escape("(a program must be able to issue 1,000,000 codes)")):
        update_program(db, shop.id, program_of(db, shop).id, {"code_length": 8})


def test_every_problem_is_reported_at_once_and_nothing_changes(db, shop):
    program = program_of(db, shop)
    before = stored(program)
    with pytest.raises(BadRequest) as refused:
        update_program(db, shop.id, program.id, {"active": True, "colour": "red", "lock_to_customer": "no",
                                                 "name": "", "value": 0, "expires_after_days": 0, "code_length": 8})
    problems = str(refused.value).split("; ")
    assert problems[0].startswith("unknown field 'colour'")
    assert problems[1:5] == [
        "lock_to_customer must be true or false, not 'no'",
        "name must be 1 to 255 characters",
        "value must be more than 0 and at most 100 for a percentage, not 0",
        "expires_after_days must be none (codes never expire) or 1 to 3650 days, not 0",
    ]
    assert problems[5].startswith("code_length: codes would be guessable")
    assert str(refused.value).endswith("use at least 9 random characters (a program must be able to issue "
                                       "1,000,000 codes)")
    db.rollback()
    assert stored(program_of(db, shop)) == before  # not even the valid "active"


def test_each_problem_comes_with_the_field_it_is_about(db, shop):
    """A page places each message by its field from ``problems``; the message stays the joined texts."""
    program = program_of(db, shop, "referral_reward")
    with pytest.raises(InvalidChange) as refused:
        update_program(db, shop.id, program.id, {"colour": "red", "id": 3, "name": "", "value": "x",
                                                 "minimum_subtotal": 0, "expires_after_days": 0,
                                                 "code_prefix": "A B", "redirect_path": "nope",
                                                 "lock_to_customer": False, "value_type": "bogo"})
    assert str(refused.value) == "; ".join(text for _, text in refused.value.problems)
    fields = [name for name, _ in refused.value.problems]
    assert fields == ["id", None, "value", "name", "value_type", "minimum_subtotal", "expires_after_days",
                      "code_format", "redirect_path", "lock_to_customer"]
    for name, text in refused.value.problems:  # each text begins with the field(s) it is about
        assert text.startswith("code_prefix: " if name == "code_format" else name or "unknown field")
    assert refused.value.by_field()["lock_to_customer"] == [
        "lock_to_customer must stay true for the referral_reward program: a reward is the advocate's alone"]


def test_a_code_length_out_of_range_is_the_length_fields_problem(db, shop):
    with pytest.raises(InvalidChange) as refused:
        update_program(db, shop.id, program_of(db, shop).id, {"code_length": 5, "code_pattern": "####-####-##"})
    assert refused.value.problems == [("code_length", "code_length must be 6 to 32 random characters, not 5")]


@pytest.mark.parametrize(("format_", "example", "problem"), [
    (("hi-", 10, DEFAULT_ALPHABET.lower(), None), f"HI-[{DEFAULT_ALPHABET}]{{10}}", None),
    (("", 6, DEFAULT_ALPHABET, " ####-####-## "), f"[{DEFAULT_ALPHABET}]{{4}}-[{DEFAULT_ALPHABET}]{{4}}-"
                                                  f"[{DEFAULT_ALPHABET}]{{2}}", None),
    # Too small for a program, yet well formed: a sample of its look, and the generator's reason.
    (("A", 8, DEFAULT_ALPHABET, None), f"A[{DEFAULT_ALPHABET}]{{8}}",
     "codes would be guessable: 8 random characters from 31 give 39.6 bits, at least 40 are needed; use at least "
     "9 random characters (a program must be able to issue 1,000,000 codes)"),
    (("", 12, "AB", None), "[AB]{12}", "codes would be guessable"),
    (("", 5, DEFAULT_ALPHABET, None), f"[{DEFAULT_ALPHABET}]{{5}}", "code_length must be 6 to 32 random characters"),
    # Malformed: no sample.
    (("", 10, "A!", None), None, "the alphabet must be at least 2 distinct characters A-Z and 0-9"),
    (("", 40, DEFAULT_ALPHABET, None), None, "code_length must be 6 to 32 random characters, not 40"),
    (("", 10, DEFAULT_ALPHABET, "----"), None, "the pattern needs # for each random character"),
    (("", 10, "", None), None, "the alphabet must be at least 2 distinct characters"),
])
def test_a_format_sample_is_what_update_program_would_make_of_it(format_, example, problem):
    sample = format_sample(*format_)
    assert sample["volume"] == 1_000_000
    assert sample["entropy_bits"] == round(CodeFormat(length=format_[1], alphabet=format_[2].strip().upper(),
                                                      pattern=format_[3] and format_[3].strip()).entropy_bits, 1)
    if example is None:
        assert sample["example"] is None
    else:
        assert re.fullmatch(example, sample["example"])
    if problem is None:
        assert sample["problem"] is None
    else:
        assert problem in sample["problem"]


def test_a_format_sample_finds_the_problem_update_program_finds(db, shop):
    program = program_of(db, shop)
    with pytest.raises(InvalidChange) as refused:
        update_program(db, shop.id, program.id, {"code_alphabet": "ABCDEF"})
    [(field, text)] = refused.value.problems
    assert field == "code_format"
    assert text == "code_alphabet: " + format_sample("WELCOME-", 10, "ABCDEF", None)["problem"]


def test_code_format_matches_the_program(db, shop):
    program = update_program(db, shop.id, program_of(db, shop).id,
                             {"code_prefix": "a-", "code_alphabet": "abcdefghjk", "code_length": 14})
    assert code_format(program) == CodeFormat(prefix="A-", length=14, alphabet="ABCDEFGHJK")


# --- scoping ----------------------------------------------------------------------------------

def test_another_shops_program_is_not_found(db, rt, shop):
    other = make_shop(db, rt.cipher, domain=OTHER)
    lifecycle.create_default_programs(db, other.id)
    db.commit()
    theirs = program_of(db, other)
    with pytest.raises(NotFound, match=f"no program {theirs.id} for this store"):
        update_program(db, shop.id, theirs.id, {"active": True})
    with pytest.raises(NotFound, match="no program 999999 for this store"):
        update_program(db, shop.id, 999999, {"active": True})
    db.rollback()
    assert program_of(db, other).active is False
