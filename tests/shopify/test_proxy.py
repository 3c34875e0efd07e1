"""The app proxy signature, checked against vectors that do not come from our own code.

- Shopify's documentation example ("Authenticate app proxies", also in
  ../shared/reference/shopify-platform.md §8): secret ``hush``, a fixed query, a fixed signature.
- ``Shopify/shopify-app-js`` ``packages/apps/shopify-api/lib/utils/__tests__/hmac-validator.test.ts``
  ("when signator is appProxy"): the signed strings written out by hand in that test.
- Vectors accepted by Shopify's Python package ``shopifyapp`` 1.0.2 (``shopify_app.verify.app_proxy.
  verify_app_proxy_req``, run with ``time.time`` patched to the timestamp, current and old secret):
  URL-encoded spaces, ``&`` and ``+`` inside values, non-ASCII, a repeated extra key, an empty customer.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, urlsplit

import pytest

from app.errors import BadRequest, Unauthorized
from app.shopify.proxy import ProxyRequest, proxy_signature, signed_message, verify_proxy_request

DOCS_QUERY = ("extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1"
              "&path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555")
DOCS_SIGNATURE = "4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb"

SECRET = "test-client-secret-0123456789abcdef"
# Accepted by shopifyapp 1.0.2's verify_app_proxy_req with client_secret=SECRET at time 1790000000 (and
# with SECRET as old_client_secret beside another current secret); refused with another secret alone.
SHOPIFYAPP_URLS = [
    ("https://app.example.com/proxy/page?ref=spring%20sale&note=caf%C3%A9%20%26%20co%2B1&shop=demo.myshopify.com"
     "&logged_in_customer_id=7340031262&path_prefix=%2Fapps%2Foncecode&timestamp=1790000000&tag=b&tag=a"
     "&signature=5842c7b2819fdf7cac8fa6102d97e162c247f97ef5e0d5e9af86cc3556b443a2", 7340031262),
    ("https://app.example.com/proxy?shop=demo.myshopify.com&logged_in_customer_id=&path_prefix=%2Fapps%2Foncecode"
     "&timestamp=1790000000&signature=0e3e8e3bff9a45dc5262dbc9a8d9fc69308448325b71460a7c85b9e7b701b3fa", None),
]
NOW = 1790000000


def pairs_of(url_or_query: str) -> list[tuple[str, str]]:
    """The decoded query pairs, in order, as a WSGI framework hands them over."""
    query = urlsplit(url_or_query).query if "://" in url_or_query else url_or_query
    return parse_qsl(query, keep_blank_values=True)


def signed(params: list[tuple[str, str]], secret: str = SECRET) -> list[tuple[str, str]]:
    """``params`` with a signature computed here, independently of app.shopify.proxy."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    message = "".join(f"{k}={','.join(v)}" for k, v in sorted(grouped.items()))
    return [*params, ("signature", hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest())]


def fresh(shop: str = "demo.myshopify.com", customer: str = "7340031262", **extra: str) -> list[tuple[str, str]]:
    return [("shop", shop), ("logged_in_customer_id", customer), ("path_prefix", "/apps/oncecode"),
            ("timestamp", str(NOW)), *extra.items()]


# --- the algorithm, against Shopify's vectors ---------------------------------------------------------

def test_the_documentation_example():
    pairs = pairs_of(DOCS_QUERY)
    assert signed_message(pairs) == ("extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviews"
                                     "shop=shop-name.myshopify.comtimestamp=1317327555")
    assert proxy_signature("hush", pairs) == DOCS_SIGNATURE
    verified = verify_proxy_request([*pairs, ("signature", DOCS_SIGNATURE)], ["hush"], now=1317327555)
    assert verified == ProxyRequest(shop="shop-name.myshopify.com", customer_id=1, path_prefix="/apps/awesome_reviews")


def test_the_strings_shopify_app_js_signs():
    base = [("shop", "the shop URL"), ("logged_in_customer_id", "1"), ("path_prefix", "/apps/my_app"),
            ("timestamp", "1700000000")]
    assert signed_message(base) == (
        "logged_in_customer_id=1path_prefix=/apps/my_appshop=the shop URLtimestamp=1700000000")
    assert signed_message([*base, ("foo", "bar")]) == (
        "foo=barlogged_in_customer_id=1path_prefix=/apps/my_appshop=the shop URLtimestamp=1700000000")


@pytest.mark.parametrize(("url", "customer"), SHOPIFYAPP_URLS)
def test_vectors_shopifyapp_accepts(url: str, customer: int | None):
    verified = verify_proxy_request(pairs_of(url), [SECRET], now=NOW)
    assert verified == ProxyRequest(shop="demo.myshopify.com", customer_id=customer, path_prefix="/apps/oncecode")
    # The previous secret during a rotation, as shopifyapp's old_client_secret.
    assert verify_proxy_request(pairs_of(url), ["the-new-secret", SECRET], now=NOW) == verified
    with pytest.raises(Unauthorized, match="invalid app proxy signature"):
        verify_proxy_request(pairs_of(url), ["the-new-secret"], now=NOW)


def test_our_signer_matches_an_independent_one():
    params = fresh(ref="a b", note="x&y=z", tag="2")
    params.insert(0, ("tag", "1"))
    assert signed([*params]) == [*params, ("signature", proxy_signature(SECRET, params))]


# --- refusals --------------------------------------------------------------------------------------

def test_a_fresh_request_is_accepted_within_90_seconds_either_way():
    request = signed(fresh())
    for moment in (NOW - 90, NOW, NOW + 90):
        assert verify_proxy_request(request, [SECRET], now=moment).customer_id == 7340031262


@pytest.mark.parametrize(("change", "error", "message"), [
    (lambda p: [(k, "demo.myshopify.com" if k == "path_prefix" else v) for k, v in p], Unauthorized,
     "invalid app proxy signature"),
    (lambda p: [(k, "1" if k == "logged_in_customer_id" else v) for k, v in p], Unauthorized,
     "invalid app proxy signature"),
    (lambda p: [*p[:-1], ("extra", "1"), p[-1]], Unauthorized, "invalid app proxy signature"),
    (lambda p: [(k, v) for k, v in p if k != "signature"], Unauthorized, "missing app proxy signature"),
    (lambda p: [(k, "" if k == "signature" else v) for k, v in p], Unauthorized, "missing app proxy signature"),
    (lambda p: [(k, "zz" * 32 if k == "signature" else v) for k, v in p], BadRequest, "64 hexadecimal"),
    (lambda p: [(k, v[:-1] if k == "signature" else v) for k, v in p], BadRequest, "64 hexadecimal"),
    (lambda p: [(k, "é" * 64 if k == "signature" else v) for k, v in p], BadRequest, "64 hexadecimal"),
])
def test_a_tampered_or_unsigned_request_is_refused(change, error, message):
    with pytest.raises(error, match=message):
        verify_proxy_request(change(signed(fresh())), [SECRET], now=NOW)


@pytest.mark.parametrize("moment", [NOW + 91, NOW + 3600, NOW - 91, NOW - 86400])
def test_a_stale_or_future_timestamp_is_refused(moment: int):
    with pytest.raises(Unauthorized, match="more than 90 seconds from now"):
        verify_proxy_request(signed(fresh()), [SECRET], now=moment)


@pytest.mark.parametrize(("stamp", "error"), [("", Unauthorized), ("soon", BadRequest), ("-5", BadRequest),
                                              ("1e9", BadRequest), ("9" * 40, BadRequest)])
def test_a_missing_or_malformed_timestamp_is_refused(stamp: str, error: type[Exception]):
    params = [(k, stamp if k == "timestamp" else v) for k, v in fresh()]
    with pytest.raises(error, match="timestamp"):
        verify_proxy_request(signed(params), [SECRET], now=NOW)


@pytest.mark.parametrize("name", ["shop", "logged_in_customer_id", "path_prefix", "timestamp", "signature"])
def test_a_repeated_identity_parameter_is_refused_even_when_signed(name: str):
    # What a visitor gets by appending ?shop=other.myshopify.com to the storefront URL: Shopify adds its
    # own and signs both, joined by a comma. Correctly signed, and still refused.
    params = fresh()
    value = "other.myshopify.com" if name == "shop" else dict(params).get(name, "1")
    with pytest.raises(BadRequest, match=f"'{name}' appears more than once"):
        verify_proxy_request(signed([(name, value), *params]), [SECRET], now=NOW)


def test_a_repeated_extra_parameter_is_signed_joined():
    params = [("tag", "b"), *fresh(), ("tag", "a")]
    assert "tag=b,a" in signed_message(params)
    assert verify_proxy_request(signed(params), [SECRET], now=NOW).shop == "demo.myshopify.com"


@pytest.mark.parametrize("shop", ["", "demo.myshopify.com.evil.com", "evil.com", "-x.myshopify.com"])
def test_a_signed_request_for_something_that_is_no_shop_is_refused(shop: str):
    with pytest.raises(BadRequest, match="shop"):
        verify_proxy_request(signed(fresh(shop=shop)), [SECRET], now=NOW)


@pytest.mark.parametrize("customer", ["abc", "0", "-1", "1.5", str(2**63), " 1"])
def test_a_signed_request_with_an_odd_customer_id_is_refused(customer: str):
    with pytest.raises(BadRequest, match="logged_in_customer_id"):
        verify_proxy_request(signed(fresh(customer=customer)), [SECRET], now=NOW)


def test_nobody_logged_in_and_upper_case_shop():
    verified = verify_proxy_request(signed(fresh(shop="Demo.myshopify.com", customer="")), [SECRET], now=NOW)
    assert verified == ProxyRequest(shop="demo.myshopify.com", customer_id=None, path_prefix="/apps/oncecode")
