"""Referral links in the domain (``app.codes.referrals``), on the real database."""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, make_url, select, text, update
from sqlalchemy.exc import IntegrityError

from app import lifecycle
from app.codes import referrals
from app.codes.issuance import remember_customer
from app.config import ROOT
from app.db import utcnow
from app.errors import BadRequest, NotFound
from app.models import Customer, ReferralLink
from tests import isolation
from tests.helpers import make_shop, make_shop_with_programs, program_of


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def referral_program(db, shop, active: bool) -> None:  # type: ignore[no-untyped-def]
    program = program_of(db, shop, "referral_reward")
    program.active = active
    db.commit()


# --- tokens -----------------------------------------------------------------------------------------

def test_a_token_has_128_random_bits_in_22_url_safe_characters():
    tokens = [referrals.new_token() for _ in range(2000)]
    assert len(set(tokens)) == len(tokens)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", token) for token in tokens)
    assert referrals.TOKEN_BYTES * 8 == 128 >= 96
    # Every character of a 22-character token carries 6 bits except the last (2 bits: 128 = 21*6 + 2),
    # so the first 21 positions use the whole alphabet evenly. A counter, a timestamp or an id would not.
    counts = Counter(char for token in tokens for char in token[:21])
    assert len(counts) == 64
    expected = 2000 * 21 / 64
    assert all(abs(n - expected) < 6 * math.sqrt(expected) for n in counts.values())


def test_tokens_are_not_derived_from_the_customer(db, shop):
    links = [referrals.create_link(db, shop.id, shopify_id)[0] for shopify_id in (1, 2, 3)]
    db.commit()
    tokens = [link.token for link in links]
    assert len(set(tokens)) == 3
    # Consecutive customers get tokens that share no common prefix: nothing sequential.
    assert len({token[:4] for token in tokens}) == 3


def test_the_database_refuses_a_token_twice(db, shop):
    first, _ = referrals.create_link(db, shop.id, 1)
    db.commit()
    customer, _ = remember_customer(db, shop.id, 2)
    db.add(ReferralLink(shop_id=shop.id, customer_id=customer.id, token=first.token, status="active"))
    with pytest.raises(IntegrityError):
        db.commit()


def test_a_colliding_token_is_drawn_again(db, shop, monkeypatch):
    taken, _ = referrals.create_link(db, shop.id, 1)
    db.commit()
    draws = iter([taken.token, "F" * 22])
    monkeypatch.setattr(referrals, "new_token", lambda: next(draws))
    fresh, new = referrals.create_link(db, shop.id, 2)
    db.commit()
    assert new and fresh.token == "F" * 22


def test_the_link_url_is_the_apps(settings):
    assert referrals.link_url(settings, "A" * 22) == f"https://oncecode.test/r/{'A' * 22}"


@pytest.mark.parametrize(("given", "expected"), [
    (1, 1), (42, 42), ("42", 42), ("gid://shopify/Customer/706405506930370084", 706405506930370084),
    (2**63 - 1, 2**63 - 1), (str(2**63 - 1), 2**63 - 1),
])
def test_customer_ids_accepted(given, expected):
    assert referrals.shopify_customer_id(given) == expected


@pytest.mark.parametrize("given", [
    0, -1, 2**63, str(2**63), "0", "-5", "4.2", 4.2, "", "abc", None, True, [], {}, "gid://shopify/Order/42",
    "gid://shopify/Customer/0", "99999999999999999999", "١٢", "+42", " 42 ", "²", "4_2",
    "gid://shopify/Customer/" + "9" * 5000,
])
def test_customer_ids_refused_with_the_rule(given):
    with pytest.raises(BadRequest, match=r"customer_id must be a Shopify customer id \(a number from 1 to "
                                         r"9223372036854775807 or gid://shopify/Customer/<id>\), not "):
        referrals.shopify_customer_id(given)


# --- creation -----------------------------------------------------------------------------------------

def test_creating_twice_gives_the_same_link(db, shop):
    first, new = referrals.create_link(db, shop.id, 42)
    again, new_again = referrals.create_link(db, shop.id, 42)
    db.commit()
    assert new and not new_again and first.id == again.id and first.token == again.token
    assert first.status == "active" and first.retired_at is None and first.clicks == 0 and first.synced_at is None


@pytest.mark.parametrize("known_customer", [True, False])
def test_racing_callers_make_one_link(rt, shop, known_customer):
    if known_customer:
        with rt.db.session_scope() as session:
            remember_customer(session, shop.id, 42)
    barrier = threading.Barrier(8)
    got: list[tuple[int, bool]] = []

    def race() -> None:
        with rt.db.session_scope() as session:
            barrier.wait()
            link, new = referrals.create_link(session, shop.id, 42)
            got.append((link.id, new))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8 and len({link_id for link_id, _ in got}) == 1
    assert sum(new for _, new in got) == 1
    with rt.db.session_scope() as session:
        assert session.scalar(select(text("count(*)")).select_from(ReferralLink)) == 1


def test_a_retired_link_makes_room_for_a_new_one(db, shop):
    old, _ = referrals.create_link(db, shop.id, 42)
    assert referrals.retire(db, old) is True
    assert referrals.retire(db, old) is False  # twice: nothing more
    new, created = referrals.create_link(db, shop.id, 42)
    db.commit()
    assert created and new.id != old.id and new.token != old.token
    assert old.status == "retired" and old.retired_at is not None and old.synced_at is None


def test_the_schema_refuses_two_active_links_for_one_customer(db, shop):
    link, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    db.add(ReferralLink(shop_id=shop.id, customer_id=link.customer_id, token=referrals.new_token(), status="active"))
    with pytest.raises(IntegrityError):
        db.commit()


def test_the_schema_refuses_a_retired_link_without_its_moment(db, shop):
    link, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    with pytest.raises(IntegrityError):
        db.execute(update(ReferralLink).where(ReferralLink.id == link.id).values(status="retired"))


def test_links_are_per_shop(db, rt, shop):
    other = make_shop_with_programs(db, rt.cipher, domain="other.myshopify.com")
    mine, _ = referrals.create_link(db, shop.id, 42)
    theirs, _ = referrals.create_link(db, other.id, 42)
    db.commit()
    assert mine.id != theirs.id
    with pytest.raises(NotFound):
        referrals.get_link(db, other.id, mine.id)
    with pytest.raises(NotFound):
        referrals.find_link(db, other.id, mine.token)
    assert [link.id for link, _ in referrals.list_links(db, other.id)] == [theirs.id]


@pytest.mark.parametrize(("active", "made"), [(True, True), (False, False)])
def test_signup_makes_a_link_only_when_the_referral_program_is_on(db, shop, active, made):
    referral_program(db, shop, active)
    got = referrals.link_at_signup(db, shop, 42)
    db.commit()
    assert (got.link is not None) is made and got.new is made
    assert got.reason == ("referral link created" if made else "referral program off: no link")


def test_the_friend_program_alone_does_not_switch_links_on(db, shop):
    friend = program_of(db, shop, "referral_friend")
    friend.active = True
    db.commit()
    assert referrals.program_on(db, shop.id) is False
    assert referrals.link_at_signup(db, shop, 42).link is None


# --- finding ------------------------------------------------------------------------------------------

def test_a_link_is_found_by_token_or_by_its_customers_active_link(db, shop):
    link, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    assert referrals.find_link(db, shop.id, link.token).id == link.id
    assert referrals.find_link(db, shop.id, "42").id == link.id
    assert referrals.find_link(db, shop.id, "gid://shopify/Customer/42").id == link.id
    with pytest.raises(NotFound, match="customer 43 has no active referral link"):
        referrals.find_link(db, shop.id, "43")
    with pytest.raises(NotFound, match="no referral link with token"):
        referrals.find_link(db, shop.id, "Z" * 22)
    with pytest.raises(BadRequest):
        referrals.find_link(db, shop.id, "not a token")
    referrals.retire(db, link)
    db.commit()
    assert referrals.find_link(db, shop.id, link.token).status == "retired"  # a token finds it retired too
    with pytest.raises(NotFound):
        referrals.find_link(db, shop.id, "42")


def test_listing_filters_and_pages(db, shop):
    links = [referrals.create_link(db, shop.id, n)[0] for n in (1, 2, 3)]
    referrals.retire(db, links[1])
    db.commit()
    assert [link.id for link, _ in referrals.list_links(db, shop.id)] == [3, 2, 1]
    assert [(link.id, shopify_id) for link, shopify_id in referrals.list_links(db, shop.id, status="active")] == [
        (3, 3), (1, 1)]
    assert [link.id for link, _ in referrals.list_links(db, shop.id, shopify_customer_id=2)] == [2]
    assert [link.id for link, _ in referrals.list_links(db, shop.id, before=3, limit=1)] == [2]
    with pytest.raises(BadRequest, match="status must be one of active, retired"):
        referrals.list_links(db, shop.id, status="open")


def test_link_json(db, shop, settings):
    link, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    shown = referrals.link_json(link, settings, 42)
    assert shown["url"] == f"https://oncecode.test/r/{link.token}" and shown["customer_id"] == 42
    assert (shown["status"], shown["clicks"], shown["metafield"], shown["error"]) == ("active", 0, "pending", None)
    link.synced_at = utcnow()
    assert referrals.link_json(link, settings, 42)["metafield"] == "written"
    referrals.retire(db, link)
    assert referrals.link_json(link, settings, 42)["metafield"] == "pending"
    link.synced_at = utcnow()
    assert referrals.link_json(link, settings, 42)["metafield"] == "removed"
    link.last_error = "no such customer"
    assert referrals.link_json(link, settings, 42)["metafield"] == "failed"


# --- the landing --------------------------------------------------------------------------------------

def test_landing_finds_an_active_link_and_its_click_is_counted_afterwards(db, rt, shop):
    link, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    assert referrals.land(db, link.token) == referrals.Landing("active", shop.domain, shop.id, link.id)
    db.commit()
    db.refresh(link)
    assert link.clicks == 0  # looking up counts nothing: the landing records its click after its commit
    moment = utcnow()
    referrals.record_click(rt.db, referrals.Click(shop.id, link.id, moment))
    referrals.record_click(rt.db, referrals.Click(shop.id, link.id, moment, new_visitor=True))
    db.refresh(link)
    assert link.clicks == 2 and link.last_clicked_at == moment
    referrals.retire(db, link)
    assert referrals.land(db, link.token) == referrals.Landing("retired", shop.domain)


@pytest.mark.parametrize("token", ["Z" * 22, "short", "a/b", "A" * 23, "", "%00" * 8, "é" * 22])
def test_landing_on_an_unknown_token(db, shop, token):
    assert referrals.land(db, token) == referrals.Landing("unknown")


def test_landing_on_a_store_that_uninstalled(db, rt):
    shop = make_shop(db, rt.cipher)
    link, _ = referrals.create_link(db, shop.id, 42)
    shop.uninstalled_at, shop.access_token = utcnow(), None
    db.commit()
    assert referrals.land(db, link.token) == referrals.Landing("store_closed", shop.domain)
    db.commit()
    db.refresh(link)
    assert link.clicks == 0


def test_concurrent_clicks_are_all_counted(rt, shop):
    with rt.db.session_scope() as session:
        token = referrals.create_link(session, shop.id, 42)[0].token
    barrier = threading.Barrier(8)

    with rt.db.session_scope() as session:
        link_id = session.scalar(select(ReferralLink.id).where(ReferralLink.token == token))

    def click() -> None:
        barrier.wait()
        for _ in range(25):
            referrals.record_click(rt.db, referrals.Click(shop.id, link_id, utcnow()))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with rt.db.session_scope() as session:
        assert session.scalar(select(ReferralLink.clicks)) == 200


# --- the sweep, privacy -------------------------------------------------------------------------------

def test_stranded_links_are_those_of_installed_shops_with_an_old_unsynced_change(db, rt, shop):
    old, _ = referrals.create_link(db, shop.id, 1)
    fresh, _ = referrals.create_link(db, shop.id, 2)
    synced, _ = referrals.create_link(db, shop.id, 3)
    retired, _ = referrals.create_link(db, shop.id, 4)
    long_ago = utcnow() - timedelta(minutes=5)
    for link in (old, synced, retired):
        link.created_at = long_ago
    synced.synced_at = long_ago
    db.commit()
    referrals.retire(db, retired)
    db.commit()
    assert referrals.stranded(db) == [(shop.id, old.id, "active")]
    retired.retired_at = long_ago
    db.commit()
    assert referrals.stranded(db) == [(shop.id, old.id, "active"), (shop.id, retired.id, "retired")]
    shop.uninstalled_at, shop.access_token = utcnow(), None
    db.commit()
    assert referrals.stranded(db) == []


def test_data_request_lists_the_customers_links(db, shop):
    link, _ = referrals.create_link(db, shop.id, 42)
    referrals.retire(db, link)
    second, _ = referrals.create_link(db, shop.id, 42)
    db.commit()
    data = lifecycle.customer_data(db, shop, 42)
    assert [(entry["token"], entry["status"]) for entry in data["referral_links"]] == [
        (link.token, "retired"), (second.token, "active")]
    assert "referral_token" not in data["customer"]
    assert lifecycle.customer_data(db, shop, 43)["referral_links"] == []


def test_redaction_retires_the_links_and_unlinks_them(db, shop):
    link, _ = referrals.create_link(db, shop.id, 42)
    link.clicks = 7
    db.commit()
    lifecycle.redact_customer(db, shop, {"customer": {"id": 42}}, current_event_id="x")
    db.commit()
    db.expire_all()
    kept = db.get(ReferralLink, link.id)
    assert (kept.status, kept.customer_id, kept.clicks) == ("retired", None, 7)
    assert kept.synced_at is not None  # nothing left to write: Shopify erases the customer itself
    assert referrals.land(db, link.token).state == "retired"
    assert db.scalar(select(Customer).where(Customer.shopify_customer_id == 42)) is None
    assert referrals.stranded(db) == []


# --- the migration ------------------------------------------------------------------------------------

def _alembic(url: str, action: str, revision: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    getattr(command, action)(config, revision)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):  # type: ignore[no-untyped-def]
    """A database of its own, on either backend, for walking migrations up and down."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
        return
    url = make_url(isolation.run_database_url())
    url = url.set(database=f"{url.database}_0012").render_as_string(hide_password=False)
    isolation.create_database(url)
    yield url
    isolation.drop_database(url)


def test_0012_drops_the_unused_customer_tokens_and_downgrade_brings_them_back(empty_database):
    url = empty_database
    _alembic(url, "upgrade", "0011")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO shops (id, domain, scopes, api_version, installed_at, settings, "
                                "created_at, updated_at) VALUES (1, 's.myshopify.com', '', '2026-10', "
                                "'2026-12-01', '{}', '2026-12-01', '2026-12-01')"))
        connection.execute(text("INSERT INTO customers (id, shop_id, shopify_customer_id, referral_token, created_at)"
                                " VALUES (1, 1, 42, 'old-token', '2026-12-01'), (2, 1, 43, 'other', '2026-12-01')"))
    _alembic(url, "upgrade", "0012")
    with engine.begin() as connection:
        assert "referral_token" not in {c["name"] for c in inspect(connection).get_columns("customers")}
        assert connection.execute(text("SELECT count(*) FROM referral_links")).scalar_one() == 0  # none made up
        connection.execute(text("INSERT INTO referral_links (shop_id, customer_id, token, status, created_at, clicks)"
                                " VALUES (1, 1, :token, 'active', '2026-12-02', 0)"), {"token": "T" * 22})
    _alembic(url, "downgrade", "0011")
    with engine.begin() as connection:
        tokens = dict(connection.execute(text("SELECT shopify_customer_id, referral_token FROM customers")).all())
        assert not inspect(connection).has_table("referral_links")
    _alembic(url, "upgrade", "head")  # and up again
    engine.dispose()
    assert tokens[42] == "T" * 22 and len(tokens[43]) == 32 and tokens[43] != tokens[42]


def test_shop_redaction_erases_the_links(db, rt):
    shop = make_shop(db, rt.cipher, installed=False)
    referrals.create_link(db, shop.id, 42)
    db.commit()
    assert lifecycle.redact_shop(db, shop.domain, keep_event_id="x") == "redacted"
    db.commit()
    assert db.scalar(select(text("count(*)")).select_from(ReferralLink)) == 0
