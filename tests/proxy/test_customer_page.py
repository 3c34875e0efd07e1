"""``GET /proxy``: the customer's storefront page, as Shopify's app proxy fetches it."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from sqlalchemy.orm import Session

from app.codes import programs
from app.codes.customer_codes import open_codes
from app.codes.issuance import remember_customer, reserve
from app.db import utcnow
from app.models import IssuedCode, PaidOrder, Shop
from tests.conftest import API_SECRET
from tests.helpers import make_shop_with_programs, program_of

SHOP = "demo.myshopify.com"
OTHER_SHOP = "other.myshopify.com"
ADA, BOB = 7340031262, 7340031263


def proxy_query(shop: str = SHOP, customer: int | None = ADA, secret: str = API_SECRET,
                timestamp: int | None = None, extra: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """A query as Shopify forwards it: the visitor's ``extra`` first, then its own parameters, signed
    here by the documented algorithm (not by app.shopify.proxy)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    params = [*extra, ("shop", shop), ("logged_in_customer_id", "" if customer is None else str(customer)),
              ("path_prefix", "/apps/oncecode"), ("timestamp", str(stamp))]
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    message = "".join(f"{k}={','.join(v)}" for k, v in sorted(grouped.items()))
    signature = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return urlencode([*params, ("signature", signature)])


def give_code(session: Session, shop: Shop, customer_id: int, kind: str = "welcome", status: str = "attached",
              key: str | None = None, **program_changes: object) -> IssuedCode:
    """A code of the shop's ``kind`` program for the customer, taken to ``status`` as issuance would."""
    program = program_of(session, shop, kind)
    if program_changes:
        program = programs.update_program(session, shop.id, program.id, program_changes)
    customer, _ = remember_customer(session, shop.id, customer_id)
    row, _ = reserve(session, program, customer, key or f"test:{shop.id}:{customer_id}:{kind}:{status}")
    row.status = status
    if status in ("created", "attached", "redeemed"):
        row.discount_gid = f"gid://shopify/DiscountCodeNode/{row.id}"
    session.commit()
    return row


@pytest.fixture
def shop(db, rt) -> Shop:  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher, SHOP)


def page(client, **kwargs):  # type: ignore[no-untyped-def]
    return client.get("/proxy?" + proxy_query(**kwargs))


# --- the page ------------------------------------------------------------------------------------

def test_a_logged_out_visitor_is_asked_to_log_in(client, shop: Shop):
    answer = page(client, customer=None)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/liquid")
    assert answer.headers["Cache-Control"] == "private, no-store"
    assert '<a href="https://demo.myshopify.com/account/login">Log in</a>' in answer.text
    assert "<html" not in answer.text and "<script" not in answer.text  # the theme provides the page around it
    assert "Your discount codes" not in answer.text


def test_a_logged_in_customer_sees_their_open_codes_only(client, db, rt, shop: Shop):
    other = make_shop_with_programs(db, rt.cipher, OTHER_SHOP)
    mine = give_code(db, shop, ADA, value=15, expires_after_days=30, minimum_subtotal="20.00",
                     redirect_path="/collections/new")
    bobs = give_code(db, shop, BOB)
    other_shops = give_code(db, other, ADA)  # the same Shopify customer id on another store
    used = give_code(db, shop, ADA, status="redeemed", key="used")
    revoked = give_code(db, shop, ADA, status="revoked", key="revoked")
    waiting = give_code(db, shop, ADA, status="reserved", key="waiting")  # not on the store yet
    expired = give_code(db, shop, ADA, key="expired")
    expired.expires_at = utcnow() - timedelta(minutes=1)
    db.commit()

    answer = page(client)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/liquid")
    shown = set(re.findall(r"<code>([^<]+)</code>", answer.text))
    assert shown == {mine.code}
    for row in (bobs, other_shops, used, revoked, waiting, expired):
        assert row.code not in answer.text
    assert "15 % off on orders of 20.00 or more" in answer.text
    assert f'<time datetime="{mine.expires_at.date().isoformat()}">' in answer.text  # the shop's days: UTC here
    assert (f'<a href="https://demo.myshopify.com/discount/{mine.code}?redirect=%2Fcollections%2Fnew">'
            "Apply it to my cart</a>") in answer.text
    assert "You have not referred anyone yet." in answer.text
    assert "Log in" not in answer.text


def test_amounts_name_the_shops_currency_and_codes_are_listed_by_expiry(client, db, shop: Shop):
    later = give_code(db, shop, ADA, value=10, expires_after_days=60, key="later")
    sooner = give_code(db, shop, ADA, kind="referral_reward", value_type="fixed_amount", value="5.00",
                       expires_after_days=7, key="sooner")
    never = give_code(db, shop, ADA, kind="referral_friend", value_type="free_shipping", value=0,
                      expires_after_days=None, key="never")
    db.add(PaidOrder(shop_id=shop.id, shopify_order_id=1, name="#1001", currency="EUR", total_price=Decimal(10),
                     subtotal_price=Decimal(10), total_discounts=Decimal(0), paid_at=utcnow(), our_codes=0,
                     other_codes=0, source="webhook"))
    db.commit()
    answer = page(client)
    assert re.findall(r"<code>([^<]+)</code>", answer.text) == [sooner.code, later.code, never.code]
    assert "5.00 EUR off" in answer.text and "10 % off" in answer.text and "Free shipping" in answer.text
    assert "no end date" in answer.text


def test_a_customer_with_no_codes_sees_an_empty_state(client, shop: Shop):
    answer = page(client, customer=BOB)
    assert answer.status_code == 200
    assert "You have no discount codes to use right now." in answer.text


def test_hostile_values_are_neither_html_nor_liquid(client, db, shop: Shop):
    hostile = '<script>alert(1)</script>{{ customer.email }}{% render "x" %}"'
    give_code(db, shop, ADA, name=hostile, value=10)
    answer = page(client)
    assert answer.status_code == 200
    assert "<script" not in answer.text and "{" not in answer.text and "}" not in answer.text
    assert ("&lt;script&gt;alert(1)&lt;/script&gt;&#123;&#123; customer.email &#125;&#125;"
            "&#123;% render &#34;x&#34; %&#125;&#34;") in answer.text


def test_the_page_has_no_liquid_of_its_own(client, db, shop: Shop):
    give_code(db, shop, ADA)
    for customer in (None, ADA, BOB):
        assert "{" not in page(client, customer=customer).text


# --- refusals: never any data ----------------------------------------------------------------------

@pytest.mark.parametrize(("query", "status", "message"), [
    (lambda: proxy_query(secret="not-the-secret"), 401, "invalid app proxy signature"),
    (lambda: proxy_query().replace(f"logged_in_customer_id={ADA}", f"logged_in_customer_id={BOB}"), 401,
     "invalid app proxy signature"),
    (lambda: proxy_query(timestamp=int(time.time()) - 120), 401, "more than 90 seconds"),
    (lambda: proxy_query(timestamp=int(time.time()) + 120), 401, "more than 90 seconds"),
    (lambda: re.sub(r"&signature=[0-9a-f]+", "", proxy_query()), 401, "missing app proxy signature"),
    (lambda: re.sub(r"signature=[0-9a-f]+", "signature=" + "x" * 64, proxy_query()), 400, "64 hexadecimal"),
    (lambda: proxy_query(extra=[("shop", OTHER_SHOP)]), 400, "'shop' appears more than once"),
    (lambda: proxy_query(extra=[("logged_in_customer_id", str(BOB))]), 400, "'logged_in_customer_id' appears"),
    (lambda: "", 401, "missing app proxy signature"),
])
def test_a_bad_request_gets_a_plain_refusal_and_no_data(client, db, shop: Shop, query, status: int, message: str):
    row = give_code(db, shop, ADA)
    give_code(db, shop, BOB)
    answer = client.get("/proxy?" + query())
    assert answer.status_code == status
    assert message in answer.text and answer.headers["Content-Type"].startswith("text/plain")
    assert row.code not in answer.text and "<code>" not in answer.text


def test_a_wrong_secret_is_refused_and_the_previous_secret_accepted(app_factory, db):  # type: ignore[no-untyped-def]
    app = app_factory(shopify_api_secret="the-new-secret", shopify_api_secret_previous=API_SECRET)
    make_shop_with_programs(db, app.extensions["oncecode"].cipher, SHOP)
    client = app.test_client()
    assert page(client).status_code == 200  # signed with the previous secret, during a rotation
    assert page(client, secret="the-new-secret").status_code == 200
    assert page(client, secret="a-third-secret").status_code == 401


def test_a_shop_without_oncecode_gets_a_404(client, db, rt):  # type: ignore[no-untyped-def]
    from tests.helpers import make_shop

    make_shop(db, rt.cipher, OTHER_SHOP, installed=False)
    assert page(client, shop=OTHER_SHOP).status_code == 404
    unknown = page(client, shop="nobody.myshopify.com")
    assert unknown.status_code == 404 and "not installed" in unknown.text


def test_the_proxy_is_not_limited_by_client_address(app_factory, db):  # type: ignore[no-untyped-def]
    # Every visitor of every store arrives from Shopify's servers: a per-address budget would lock them out.
    app = app_factory(public_rate_limit="2 per minute")
    make_shop_with_programs(db, app.extensions["oncecode"].cipher, SHOP)
    client = app.test_client()
    assert [page(client).status_code for _ in range(5)] == [200] * 5
    assert [client.get("/").status_code for _ in range(3)][-1] == 429  # the public pages still are


def test_open_codes_are_scoped_by_shop(db, rt, shop: Shop):  # type: ignore[no-untyped-def]
    other = make_shop_with_programs(db, rt.cipher, OTHER_SHOP)
    mine = give_code(db, shop, ADA)
    theirs = give_code(db, other, ADA)
    assert [c.code for c in open_codes(db, shop.id, ADA)] == [mine.code]
    assert [c.code for c in open_codes(db, other.id, ADA)] == [theirs.code]
    assert open_codes(db, shop.id, BOB) == []
