"""``flask referrals link|retire|links``: the operator's door to referral links."""

from __future__ import annotations

import pytest
from rq.job import Job

from app.codes import referrals
from app.models import ReferralLink
from app.queues import referral_link_job_id
from tests.helpers import make_shop, make_shop_with_programs

SHOP = "demo.myshopify.com"
MAX = 2**63 - 1


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def invoke(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(args=["referrals", *args])


def test_link_makes_one_link_and_queues_its_metafield(runner, db, rt, shop):
    made = invoke(runner, "link", SHOP, "42")
    assert made.exit_code == 0, made.output
    [link] = db.query(ReferralLink).all()
    assert made.output.strip() == (f"link {link.id} created for customer 42: https://oncecode.test/r/{link.token}; "
                                   "metafield job queued")
    assert Job.exists(referral_link_job_id(link.id, "active"), connection=rt.redis)
    again = invoke(runner, "link", SHOP, "gid://shopify/Customer/42")
    assert again.exit_code == 0 and f"link {link.id} exists already" in again.output
    assert db.query(ReferralLink).count() == 1


@pytest.mark.parametrize("customer", ["0", "-1", str(MAX + 1), "abc", "4.2", "gid://shopify/Order/1"])
def test_link_refuses_a_bad_customer_id_as_a_usage_error(runner, db, shop, customer):
    refused = invoke(runner, "link", "--", SHOP, customer)  # "--": so that "-1" reaches the argument
    assert refused.exit_code == 2
    assert "Error: CUSTOMER_ID must be a Shopify customer id (a number from 1 to" in refused.output
    assert db.query(ReferralLink).count() == 0


def test_link_names_an_unknown_or_uninstalled_shop(runner, db, rt):
    missing = invoke(runner, "link", "nope.myshopify.com", "42")
    assert missing.exit_code == 1 and "no shop 'nope.myshopify.com'" in missing.output
    make_shop(db, rt.cipher, installed=False)
    gone = invoke(runner, "link", SHOP, "42")
    assert gone.exit_code == 1 and "is not installed" in gone.output


def test_retire_by_token_or_by_customer(runner, db, rt, shop):
    first, _ = referrals.create_link(db, shop.id, 42)
    second, _ = referrals.create_link(db, shop.id, 43)
    db.commit()
    by_token = invoke(runner, "retire", SHOP, first.token)
    assert by_token.exit_code == 0 and by_token.output.strip() == f"link {first.id} retired; metafield job queued"
    assert Job.exists(referral_link_job_id(first.id, "retired"), connection=rt.redis)
    assert invoke(runner, "retire", SHOP, first.token).output.strip() == f"link {first.id} was retired already"
    by_customer = invoke(runner, "retire", SHOP, "43")
    assert by_customer.exit_code == 0 and f"link {second.id} retired" in by_customer.output
    db.expire_all()
    assert {link.status for link in db.query(ReferralLink)} == {"retired"}


@pytest.mark.parametrize(("which", "code", "complaint"), [
    ("Z" * 22, 1, "no referral link with token"),
    ("44", 1, "customer 44 has no active referral link"),
    ("0", 2, "'0' is neither a link token (22 letters, digits, - or _) nor a Shopify customer id"),
    ("not-a-token", 2, "'not-a-token' is neither a link token"),
])
def test_retire_names_what_is_wrong(runner, shop, which, code, complaint):
    refused = invoke(runner, "retire", SHOP, which)
    assert refused.exit_code == code and complaint in refused.output


def test_links_lists_with_filters(runner, db, shop):
    first, _ = referrals.create_link(db, shop.id, 42)
    second, _ = referrals.create_link(db, shop.id, 43)
    referrals.retire(db, first)
    first_clicks = 3
    first.clicks = first_clicks
    db.commit()
    listed = invoke(runner, "links", SHOP)
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.output.splitlines()
    assert header.split() == ["ID", "CUSTOMER", "STATUS", "CLICKS", "CREATED", "RETIRED", "METAFIELD", "URL", "ERROR"]
    assert [row.split()[:4] for row in rows] == [[str(second.id), "43", "active", "0"],
                                                 [str(first.id), "42", "retired", "3"]]
    assert f"https://oncecode.test/r/{second.token}" in rows[0] and "pending" in rows[0]
    only = invoke(runner, "links", SHOP, "--status", "active").output.splitlines()[1:]
    assert [row.split()[0] for row in only] == [str(second.id)]
    assert "no referral links like that" in invoke(runner, "links", SHOP, "--customer", "99").output
    bad = invoke(runner, "links", SHOP, "--customer", "0")
    assert bad.exit_code == 2 and "--customer must be a Shopify customer id" in bad.output
    assert invoke(runner, "links", SHOP, "--limit", "0").exit_code == 2
    assert invoke(runner, "links", SHOP, "--status", "open").exit_code == 2


def test_links_of_a_shop_without_any(runner, shop):
    assert invoke(runner, "links", SHOP).output.strip() == f"{SHOP} has no referral links yet"
