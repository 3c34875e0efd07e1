"""Every check of what Shopify (or someone pretending to be Shopify) sends: HMACs, shop, timestamp, JWT."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from urllib.parse import parse_qsl

import jwt
import pytest
from werkzeug.datastructures import MultiDict

from app.shopify.verify import (
    InvalidSessionToken,
    decode_session_token,
    fresh_timestamp,
    query_hmac,
    valid_shop_domain,
    verify_query_hmac,
    verify_webhook,
)

# --- webhook HMAC (base64 over the raw body) ------------------------------------------------------

VECTOR_SECRET = "hush"
VECTOR_BODY = b'{"id":1}'
VECTOR_SIGNATURE = "VnKUjZsLuN5iZWjn5EntcBVCF9kMN43LglzCE1/GSeY="


def test_webhook_reference_vector_is_accepted():
    assert verify_webhook(VECTOR_BODY, VECTOR_SIGNATURE, [VECTOR_SECRET])


@pytest.mark.parametrize(("body", "signature", "secrets"), [
    pytest.param(b'{"id":2}', VECTOR_SIGNATURE, [VECTOR_SECRET], id="tampered-body"),
    pytest.param(b'{"id": 1}', VECTOR_SIGNATURE, [VECTOR_SECRET], id="reserialised-body"),
    pytest.param(VECTOR_BODY, VECTOR_SIGNATURE, ["hushh"], id="wrong-secret"),
    pytest.param(VECTOR_BODY, None, [VECTOR_SECRET], id="missing-signature"),
    pytest.param(VECTOR_BODY, "", [VECTOR_SECRET], id="empty-signature"),
    pytest.param(VECTOR_BODY, "5672948d9b0bb8de626568e7e449ed70154217d90c378dcb825cc2135fc649e6",
                 [VECTOR_SECRET], id="hex-digest"),
    pytest.param(VECTOR_BODY, VECTOR_SIGNATURE, [], id="no-secret-configured"),
])
def test_webhook_signature_rejected(body, signature, secrets):
    assert not verify_webhook(body, signature, secrets)


def test_hex_vector_is_the_same_digest_as_the_base64_one():
    # Guards the hex-digest case above: it must be the *right* digest, wrongly encoded.
    assert base64.b64decode(VECTOR_SIGNATURE).hex() == (
        "5672948d9b0bb8de626568e7e449ed70154217d90c378dcb825cc2135fc649e6")


def test_webhook_signed_with_previous_secret_accepted_only_when_passed():
    assert verify_webhook(VECTOR_BODY, VECTOR_SIGNATURE, ["new-secret", VECTOR_SECRET])
    assert not verify_webhook(VECTOR_BODY, VECTOR_SIGNATURE, ["new-secret"])


# --- OAuth / admin-launch query HMAC (hex over sorted k=v pairs) ----------------------------------

QUERY_VECTORS = [
    ("code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com&timestamp=1337178173",
     "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"),
    ("code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com&state=0.6784241404160823"
     "&timestamp=1337178173",
     "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"),
    ("code=a94a110d86d2452eb3e2af4cfb8a3828&shop=some-shop.myshopify.com&timestamp=1337178173",
     "2cb1a277650a659f1b11e92a4a64275b128e037f2c3390e3c8fd2d8721dac9e2"),
]


@pytest.mark.parametrize(("message", "expected"), QUERY_VECTORS)
def test_query_hmac_reference_vectors(message, expected):
    params = dict(parse_qsl(message))
    assert query_hmac("hush", params) == expected
    assert verify_query_hmac({**params, "hmac": expected}, ["hush"])


@pytest.mark.parametrize(("message", "expected"), QUERY_VECTORS)
def test_query_hmac_ignores_parameter_order(message, expected):
    params = dict(reversed(parse_qsl(message)))
    assert verify_query_hmac({"hmac": expected, **params}, ["hush"])


def test_query_hmac_array_parameter_vector():
    expected = "b93b9f82996f6f8bf9f1b7bbddec284c8fabacdc4e12dc80550b4705f3003b1e"
    params = {"shop": "some-shop.myshopify.com", "ids[]": [2, 1]}
    assert query_hmac("hush", params) == expected
    assert verify_query_hmac({**params, "hmac": expected}, ["hush"])


def test_query_hmac_array_parameter_from_a_request_query():
    # What Flask hands the launch route for ?shop=...&ids[]=2&ids[]=1&hmac=...: a multi-dict.
    args = MultiDict([("shop", "some-shop.myshopify.com"), ("ids[]", "2"), ("ids[]", "1"),
                      ("hmac", "b93b9f82996f6f8bf9f1b7bbddec284c8fabacdc4e12dc80550b4705f3003b1e")])
    assert verify_query_hmac(args, ["hush"])


def test_query_hmac_escapes_delimiters():
    # "a=1&b=2" must not be confusable with a separate "b" parameter.
    params = {"a": "1&b=2", "c=3&d": "4"}
    expected = "8de3c7e965d22fa21e059868e4004f5b6fbdcef293d1622ff9408edd6325bc6b"
    assert query_hmac("secret", params) == expected
    assert verify_query_hmac({**params, "hmac": expected}, ["secret"])
    assert not verify_query_hmac({"a": "1", "b": "2", "c=3&d": "4", "hmac": expected}, ["secret"])


SIGNED = {**dict(parse_qsl(QUERY_VECTORS[0][0])), "hmac": QUERY_VECTORS[0][1]}


@pytest.mark.parametrize(("params", "secrets"), [
    pytest.param({**SIGNED, "shop": "other-shop.myshopify.com"}, ["hush"], id="tampered-shop"),
    pytest.param({**SIGNED, "timestamp": "1337178174"}, ["hush"], id="tampered-timestamp"),
    pytest.param({**SIGNED, "state": "extra"}, ["hush"], id="added-param"),
    pytest.param(SIGNED, ["hushh"], id="wrong-secret"),
    pytest.param({k: v for k, v in SIGNED.items() if k != "hmac"}, ["hush"], id="missing-hmac"),
    pytest.param({**SIGNED, "hmac": ""}, ["hush"], id="empty-hmac"),
    pytest.param({**SIGNED, "hmac": SIGNED["hmac"].upper()}, ["hush"], id="upper-case-hex"),
    pytest.param({**SIGNED, "hmac": "é" * 64}, ["hush"], id="non-ascii-hmac"),
])
def test_query_hmac_rejected(params, secrets):
    assert not verify_query_hmac(params, secrets)


def test_query_hmac_previous_secret_accepted_when_passed():
    assert verify_query_hmac(SIGNED, ["rotated-secret", "hush"])


# --- shop domain ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("demo.myshopify.com", "demo.myshopify.com"),
    ("Demo-Shop.myshopify.com", "demo-shop.myshopify.com"),
    ("shop2.myshopify.com", "shop2.myshopify.com"),
    ("a" * 63 + ".myshopify.com", "a" * 63 + ".myshopify.com"),  # a DNS label's 63 characters
    ("1.myshopify.com", "1.myshopify.com"),
])
def test_valid_shop_domain(value, expected):
    assert valid_shop_domain(value) == expected


HOSTILE_SHOPS = [
    "evil.com",
    "demo.myshopify.com.evil.com",
    "https://demo.myshopify.com/../x",
    "",
    "demo.myshopify.com/",
    "-demo.myshopify.com",
    "demo.myshopify.com\n",
    "demo@evil.com#.myshopify.com",
    " demo.myshopify.com",
    "demo.myshopify.com:443",
    "demo_shop.myshopify.com",
    "demo.myshopifyXcom",
    "https://demo.myshopify.com",
    "admin.shopify.com/store/demo",
    "a" * 64 + ".myshopify.com",  # longer than a DNS label
    "a" * 10_000 + ".myshopify.com",
    "démo.myshopify.com",
    "demo.shop.myshopify.com",
]


@pytest.mark.parametrize("value", [*HOSTILE_SHOPS, None])
def test_hostile_shop_domain_rejected(value):
    assert valid_shop_domain(value) is None


# --- timestamp freshness -------------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize("value", [str(int(NOW)), str(int(NOW) - 240), str(int(NOW) - 300), str(int(NOW) + 30)])
def test_fresh_timestamp_accepted(value):
    assert fresh_timestamp(value, now=NOW)


@pytest.mark.parametrize("value", [
    str(int(NOW) - 360), str(int(NOW) + 120), "", None, "yesterday", "1.8e9", str(int(NOW)) + "x",
])
def test_stale_future_or_garbage_timestamp_rejected(value):
    assert not fresh_timestamp(value, now=NOW)


def test_fresh_timestamp_uses_the_clock_by_default():
    assert fresh_timestamp(str(int(time.time())))
    assert not fresh_timestamp(str(int(time.time()) - 3600))


# --- session token (App Bridge ID token, HS256) --------------------------------------------------

API_KEY = "test-client-id"
SECRET = "s" * 32  # Shopify client secrets are 32 characters; shorter ones make PyJWT warn
OLD_SECRET = "o" * 32


def session_token(secret: str = SECRET, **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "https://demo.myshopify.com/admin",
        "dest": "https://demo.myshopify.com",
        "aud": API_KEY,
        "sub": "42",
        "exp": now + 60,
        "nbf": now - 1,
        "iat": now - 1,
        "jti": str(uuid.uuid4()),
        "sid": hashlib.sha256(b"session").hexdigest(),
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, secret, algorithm="HS256")


def test_valid_session_token_returns_the_shop():
    assert decode_session_token(f"Bearer {session_token()}", API_KEY, [SECRET]) == "demo.myshopify.com"


@pytest.mark.parametrize(("exp", "nbf"), [(-9, -1), (60, 9), (-9, 9)])
def test_session_token_within_the_10_second_leeway_accepted(exp, nbf):
    now = int(time.time())
    header = f"Bearer {session_token(exp=now + exp, nbf=now + nbf, iat=now - 1)}"
    assert decode_session_token(header, API_KEY, [SECRET]) == "demo.myshopify.com"


NESTED = b"[" * 100_000 + b"]" * 100_000


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    pytest.param(lambda: jwt.api_jws.PyJWS().encode(b'{"sub": ' + NESTED + b"}", SECRET, algorithm="HS256"),
                 id="signed-claims"),
    pytest.param(lambda: f"{_segment(NESTED)}.{_segment(b'{}')}.c2ln", id="header"),
])
def test_session_token_nested_too_deeply_is_invalid_not_an_error(token):
    with pytest.raises(InvalidSessionToken, match="recursion"):
        decode_session_token(f"Bearer {token()}", API_KEY, [SECRET])


def test_session_token_signed_with_previous_secret_accepted():
    header = f"Bearer {session_token(secret=OLD_SECRET)}"
    assert decode_session_token(header, API_KEY, [SECRET, OLD_SECRET]) == "demo.myshopify.com"


def _bearer(**overrides: object) -> str:
    return f"Bearer {session_token(**overrides)}"


def _raw_bearer(**overrides: object) -> str:
    """Claims PyJWT's encode refuses to write (a number for ``iss``), signed all the same."""
    claims = jwt.decode(session_token(), SECRET, algorithms=["HS256"], audience=API_KEY) | overrides
    return "Bearer " + jwt.api_jws.PyJWS().encode(json.dumps(claims).encode(), SECRET, algorithm="HS256")


# Built inside the test (lambdas), so that exp/nbf are relative to when it runs, not to collection.
@pytest.mark.parametrize("header", [
    pytest.param(lambda: _bearer(secret="w" * 32), id="wrong-secret"),
    pytest.param(lambda: _bearer(aud="someone-elses-app"), id="wrong-aud"),
    pytest.param(lambda: _bearer(exp=int(time.time()) - 120), id="expired"),
    pytest.param(lambda: _bearer(nbf=int(time.time()) + 120), id="not-yet-valid"),
    pytest.param(lambda: _bearer(iss="https://other.myshopify.com/admin"), id="iss-dest-mismatch"),
    pytest.param(lambda: _bearer(dest="https://other.myshopify.com"), id="dest-iss-mismatch"),
    pytest.param(lambda: _bearer(iss="https://evil.com/admin", dest="https://evil.com"), id="not-a-shop"),
    pytest.param(lambda: _bearer(jti=None), id="missing-jti"),
    # PyJWT checks exp and nbf only when they are there: without them a token would never expire.
    pytest.param(lambda: _bearer(exp=None), id="missing-exp"),
    pytest.param(lambda: _bearer(nbf=None), id="missing-nbf"),
    pytest.param(lambda: _bearer(exp=None, nbf=None), id="missing-exp-and-nbf"),
    pytest.param(lambda: _bearer(exp=int(time.time()) - 11), id="expired-beyond-the-leeway"),
    pytest.param(lambda: _bearer(nbf=int(time.time()) + 12), id="not-yet-valid-beyond-the-leeway"),
    pytest.param(lambda: _bearer(exp="tomorrow"), id="exp-not-a-number"),
    pytest.param(lambda: _bearer(exp=float("inf")), id="exp-infinite"),  # JSON's Infinity: int() overflows
    pytest.param(lambda: _bearer(nbf=float("nan")), id="nbf-nan"),
    pytest.param(lambda: _raw_bearer(iss=42), id="iss-not-a-string"),
    pytest.param(lambda: _bearer(dest=["https://demo.myshopify.com"]), id="dest-not-a-string"),
    pytest.param(lambda: _bearer(iss="http://demo.myshopify.com/admin"), id="iss-not-https"),
    pytest.param(lambda: _bearer(sub=None), id="missing-sub"),
    pytest.param(lambda: _bearer(aud=None), id="missing-aud"),
    pytest.param(lambda: session_token(), id="missing-bearer"),
    pytest.param(lambda: f"Basic {session_token()}", id="basic-scheme"),
    pytest.param(lambda: "Bearer ", id="empty-token"),
    pytest.param(lambda: "Bearer not.a.jwt", id="garbage"),
    pytest.param(lambda: "Bearer " + jwt.encode({"dest": "https://demo.myshopify.com", "aud": API_KEY},
                                                SECRET, algorithm="HS512"), id="other-algorithm"),
    pytest.param(lambda: "", id="empty-header"),
    pytest.param(lambda: None, id="no-header"),
])
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # HS512 with our 32-byte secret
def test_invalid_session_token_rejected(header):
    with pytest.raises(InvalidSessionToken):
        decode_session_token(header(), API_KEY, [SECRET])
