"""The CLI refuses what the API refuses (``app.params``), as a usage error: exit code 2, one line
naming the parameter, no traceback."""

from __future__ import annotations

import pytest

from app.params import ROW_ID_MAX, SHOPIFY_ID_MAX
from tests.helpers import make_shop_with_programs

SHOP = "demo.myshopify.com"


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, domain=SHOP)


@pytest.mark.parametrize(("args", "message"), [
    (["codes", "list", SHOP, "--limit", "²"], "--limit must be a whole number from 1 to 10000, not '²'"),
    (["codes", "list", SHOP, "--limit", "٣"], "--limit must be a whole number from 1 to 10000, not '٣'"),
    (["codes", "list", SHOP, "--limit", "0"], "--limit must be a whole number from 1 to 10000, not '0'"),
    (["codes", "list", SHOP, "--limit", "10001"], "--limit must be a whole number from 1 to 10000"),
    (["codes", "list", SHOP, "--limit", "9" * 5000], "--limit must be a whole number from 1 to 10000"),
    (["events", "list", "--limit", "+5"], "--limit must be a whole number from 1 to 10000, not '+5'"),
    (["codes", "list", SHOP, "--customer", str(SHOPIFY_ID_MAX + 1)],
     f"--customer must be an id: a whole number from 1 to {SHOPIFY_ID_MAX}"),
    (["codes", "issue", SHOP, "welcome", str(SHOPIFY_ID_MAX + 1)],
     f"SHOPIFY_CUSTOMER_ID must be an id: a whole number from 1 to {SHOPIFY_ID_MAX}"),
    (["codes", "issue", SHOP, "welcome", "1_000"], "SHOPIFY_CUSTOMER_ID must be an id"),
    (["codes", "show", SHOP, str(ROW_ID_MAX + 1)], f"a code id must be an id: a whole number from 1 to {ROW_ID_MAX}"),
    (["codes", "revoke", SHOP, "9" * 30], "a code id must be an id"),
    (["data-requests", "show", SHOP, str(ROW_ID_MAX + 1)], "REQUEST_ID must be an id"),
    (["data-requests", "show", SHOP, "²"], "REQUEST_ID must be an id"),
    (["programs", "set", SHOP, str(SHOPIFY_ID_MAX + 1), "active=true"], "a program id must be an id"),
    (["reconcile", "interval", SHOP, "٣"], "MINUTES must be a whole number from 1 to 1440, not '٣'"),
    (["metrics", SHOP, "--from", "²⁰²⁶-11-01"], "--from must be a date like 2026-11-30"),
    # The API's limit on an idempotency key (its column holds 255 characters with the program's prefix).
    (["codes", "issue", SHOP, "welcome", "42", "--key", "k" * 101],
     "--key must be a string of 1 to 100 characters"),
    # Bytes that are not UTF-8 on the command line (`caf$'\xe9'` in a UTF-8 shell) reach Python as lone
    # surrogates, which the database cannot store: refused before any command looks at them.
    (["codes", "show", SHOP, "caf\udce9"], "the argument 'caf\\udce9' is not UTF-8 text"),
    (["codes", "show", "caf\udce9.myshopify.com", "X"], "the argument 'caf\\udce9.myshopify.com' is not UTF-8"),
    (["codes", "issue", SHOP, "welcome", "42", "--key", "caf\udce9"], "the argument 'caf\\udce9' is not UTF-8 text"),
    (["programs", "set", SHOP, "welcome", "name=Caf\udce9"], "the argument 'name=Caf\\udce9' is not UTF-8"),
    (["events", "list", "--shop", "\udcff"], "the argument '\\udcff' is not UTF-8 text"),
    (["shops", "setup", "\udcff"], "the argument '\\udcff' is not UTF-8 text"),
    (["data-requests", "list", "\udcff"], "the argument '\\udcff' is not UTF-8 text"),
    (["metrics", SHOP, "--program", "\udcff"], "the argument '\\udcff' is not UTF-8 text"),
    (["referrals", "retire", SHOP, "\udcff"], "the argument '\\udcff' is not UTF-8 text"),
])
def test_bad_input_is_a_one_line_usage_error(runner, shop, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code == 2, result.output
    assert f"Error: {message}" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # not a traceback
    assert result.output.splitlines()[-1].startswith("Error: ")  # the message is one line, the last


def test_a_wait_is_bounded(runner, shop):
    result = runner.invoke(args=["codes", "issue", SHOP, "welcome", "42", "--wait", "inf"])
    assert result.exit_code == 2 and "--wait" in result.output


def test_an_int_field_too_long_to_read_is_refused_by_the_programs_rules(runner, shop):
    result = runner.invoke(args=["programs", "set", SHOP, "welcome", f"code_length={'9' * 5000}"])
    assert result.exit_code == 1 and "Error: code_length must be a whole number" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_largest_ids_are_looked_up(runner, shop):
    listed = runner.invoke(args=["codes", "list", SHOP, "--customer", str(SHOPIFY_ID_MAX)])
    assert listed.exit_code == 0 and "has no codes like that" in listed.output
    shown = runner.invoke(args=["codes", "show", SHOP, str(ROW_ID_MAX)])
    assert shown.exit_code == 1 and f"has no code '{ROW_ID_MAX}'" in shown.output


def test_a_code_or_token_that_begins_with_a_dash_is_an_argument_not_an_option(runner, db, shop):
    """Link tokens are URL-safe base64 (one in 64 begins with "-") and a pattern may begin a code with "-":
    ``codes show SHOP -X7K`` must find the code, not answer "No such option"."""
    from app.codes import referrals
    from app.models import ReferralLink
    from tests.helpers import issued_code

    row = issued_code(db, shop, "-DASHED1")
    shown = runner.invoke(args=["codes", "show", SHOP, "-DASHED1"])
    assert shown.exit_code == 0 and f'"id": {row.id}' in shown.output, shown.output
    assert "revoked" in runner.invoke(args=["codes", "revoke", SHOP, "-dashed1"]).output
    assert "only failed codes" in runner.invoke(args=["codes", "retry", SHOP, "-DASHED1"]).output
    link, _ = referrals.create_link(db, shop.id, 42)
    link.token = "-" + link.token[1:]
    db.commit()
    retired = runner.invoke(args=["referrals", "retire", SHOP, link.token])
    assert retired.exit_code == 0 and f"link {link.id} retired" in retired.output, retired.output
    db.expire_all()
    assert db.get(ReferralLink, link.id).status == "retired"
    # Their --help still answers.
    assert "Retire a link" in runner.invoke(args=["referrals", "retire", "--help"]).output
