"""Hostile input at every route of the app: no request, signed or not, may be answered 5xx.

The routes come from ``app.url_map``, so a route added later is fuzzed without anyone remembering
to. What differs between routes is how a caller proves who it is: ``ROUTE_AUTH`` says it per
blueprint (or endpoint), and ``test_every_route_says_how_it_is_signed`` fails for a route it does
not cover, so the new route's author decides how its signed requests are made. Each route is then
fuzzed twice: unsigned (anyone on the internet), and signed with the test app's secret (anyone who
installed the app on a development store can produce validly signed bytes): the webhook HMAC over
the generated body, the launch/OAuth HMAC over the generated query (the callback's code and state
from a real install begun with devstore), the app proxy signature over the generated query (repeats
and all), or an App Bridge session token, valid or with generated claims.

Each request starts from a valid one for its route (``BASELINES``: an existing id in the path, the
parameters and body the route expects) and makes one or two parts of it hostile: the method, the
path's ids (Unicode digits, beyond int64, thousands of digits), the query (known names with hostile
values, repeated keys, NULs, long strings, broken escapes), the headers, one field of the body
(NUL, lone surrogates, huge numbers, wrong types), the whole body (JSON nested 100,000 deep,
non-JSON, UTF-16, random bytes), or the credentials. Starting valid is what lets a short run reach
the code behind the checks: a generated request rarely gets everything else right by chance.

The run is derandomized (the same inputs every time, so CI is reproducible) and takes well under a
minute. To search longer, with new inputs each run, locally::

    FUZZ_EXAMPLES=1000 FUZZ_RANDOM=1 .venv/bin/pytest tests/test_fuzz.py -p no:randomly -q

(``FUZZ_EXAMPLES`` is per route and mode, default 30; ``FUZZ_ROUTES=/api/programs`` fuzzes only the
routes whose rule contains that text; a failure prints the request that failed.)
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import jwt
import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

import devstore
from app.codes import referrals
from app.codes.programs import FIELDS, READ_ONLY
from app.codes.referral_settings import SETTINGS as REFERRAL_SETTINGS
from app.config import DEFAULT_SCOPES
from app.db import utcnow
from app.models import DataRequest
from app.shopify.proxy import proxy_signature
from app.shopify.verify import query_hmac
from devstore.state import DevstoreConfig
from tests.codes.test_referral_list import a_referral
from tests.conftest import API_KEY, API_SECRET
from tests.e2e.harness import listening, serve
from tests.helpers import issued_code, make_shop_with_programs, order_payload, program_of, webhook_signature

# 30 requests per route and mode: derandomized, a run repeats the same inputs, so more of them in every
# run of the suite buy little (50 cost make test 13 s more of CPU); a long search is a local run's job.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ_RANDOM = os.environ.get("FUZZ_RANDOM") == "1"
FUZZ_ROUTES = os.environ.get("FUZZ_ROUTES", "")  # only routes whose rule contains this, for a long local run

SHOP = "demo.myshopify.com"  # installed, with programs, a code and a data request
OTHER = "other.myshopify.com"  # never installed

# How a caller proves who it is, per blueprint or endpoint (an endpoint's entry wins).
ROUTE_AUTH = {
    "api": "session-token",
    "webhooks": "webhook-hmac",
    "auth.launch": "launch-hmac",
    "auth.callback": "oauth-callback",
    "auth.begin": "none",  # starts OAuth for whatever shop it is given; proves nothing
    "admin": "id-token",
    "admin.session_token": "claimed-shop",  # loads App Bridge for the shop it names; shows nothing
    "proxy": "proxy-signature",
    "referrals": "none",  # a shared link, opened by anyone
    "health": "none",
    "static": "none",
}


def route_auth(endpoint: str) -> str | None:
    return ROUTE_AUTH.get(endpoint) or ROUTE_AUTH.get(endpoint.split(".", 1)[0])


# --- hostile values --------------------------------------------------------------------------------

NOTABLE = [
    "", "0", "1", "2", "-1", "+5", " 7", "7 ", "1_000", "1e3", "0x10", "NaN", "Infinity", "1.5",
    "²", "٣", "１２", "𝟗", str(2**31 - 1), str(2**31), str(2**63 - 1), str(2**63), str(2**64), "9" * 30,
    "9" * 5000, "0001-01-01", "9999-12-31", "2026-W48-1", "20261130", "2026-11-30", "2026-02-30",
    "2000-01-01", "2100-12-31", "1999-12-31", "\x00", "a\x00b", "%00", "../../etc/passwd", "..",
    "<script>alert(1)</script>", "' OR 1=1 --", SHOP, OTHER, "DEMO.myshopify.com", "demo.myshopify.com.evil.com",
    "a" * 300 + ".myshopify.com", "gid://shopify/Customer/1", f"gid://shopify/Customer/{2**63}",
    "gid://shopify/Customer/²", "open", "failed", "reserved", "true", "null", "{}", "[]", "x" * 10_000,
]
TEXT = st.one_of(
    st.sampled_from(NOTABLE),
    st.text(max_size=40),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=25),  # Unicode digits
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.tuples(st.text(min_size=1, max_size=4), st.integers(100, 3000)).map(lambda pair: pair[0] * pair[1]),
)
# Header values as a server hands them over: Latin-1, no control characters but tab.
HEADER_TEXT = st.one_of(
    st.sampled_from([v for v in NOTABLE if all(ch == "\t" or 0x20 <= ord(ch) <= 0xFF for ch in v)]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
)
# Strings only JSON carries (a query string or header cannot): lone surrogates, NULs in text.
JSON_TEXT = st.one_of(TEXT, st.sampled_from(["\ud800", "a\udfffb", "\x00", "x\x00", "\u2028", "\ufeff"]))
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(), JSON_TEXT, JSON_TEXT,
    st.sampled_from([0, 1, 2, 2**31, 2**63, 2**64, -(2**63) - 1, 10**300, 1.5, -0.0]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(JSON_TEXT, inner, max_size=4), max_leaves=12)
# A body field's new value: mostly a single hostile string or number, sometimes a structure.
FIELD_VALUES = st.one_of(st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "x" * 10_000, "", " ", "²",
                                          2**31, 2**63, -1, 0, 1e308, float("nan"), float("inf")]),
                         JSON_TEXT, JSON_SCALARS, JSON_VALUES)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _splice(parts: tuple[bytes, int, bytes]) -> bytes:
    text, at, raw = parts
    at %= len(text) + 1
    return text[:at] + raw + text[at:]


WHOLE_BODIES = st.one_of(
    st.just(b""),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=900, max_value=200_000).map(_nested),
    st.integers(min_value=900, max_value=100_000).map(lambda depth: b'{"id": 1, "customer": ' + _nested(depth) + b"}"),
    st.binary(max_size=300),
    st.sampled_from([b"\x00", b"{", b'{"id": 1}\x00', b"\xff\xfe", b'{"id": 1e999}', b'{"id": NaN}',
                     b'{"id": ' + b"9" * 5000 + b"}", b'{"id": ' + b"9" * 4000 + b"}", b"a=1&b=2"]),
)
CONTENT_TYPES = ["application/json", "application/json; charset=utf-16", "text/plain", "application/octet-stream",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "multipart/form-data",
                 "text/html; charset=nonsense"]
RAW_QUERY_TAILS = ["%ff", "%", "&&&", "=", "a=%ZZ", "shop=%00", "limit=1&limit=%C2%B2", "%C0%AF"]
TOPICS = ["orders/paid", "customers/create", "app/uninstalled", "customers/data_request", "customers/redact",
          "shop/redact", "orders/create"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


# --- credentials -----------------------------------------------------------------------------------

def session_token(claims: dict[str, Any] | None = None, shop: str = SHOP) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": API_KEY, "sub": "42",
                            "exp": now + 60, "nbf": now - 1, "iat": now - 1, "jti": str(uuid.uuid4()),
                            "sid": str(uuid.uuid4())}
    body.update(claims or {})
    # Signed bytes of any JSON, including what PyJWT's encode refuses (NaN, a number for iss).
    return jwt.api_jws.PyJWS().encode(json.dumps(body).encode(), API_SECRET, algorithm="HS256")


CLAIM_NAMES = ["iss", "dest", "aud", "sub", "exp", "nbf", "iat", "jti", "sid"]
HOSTILE_AUTHORIZATION = st.one_of(
    st.builds(lambda: f"Bearer {session_token(shop=OTHER)}"),  # a shop that never installed
    st.dictionaries(st.sampled_from(CLAIM_NAMES), JSON_VALUES, min_size=1, max_size=3).map(
        lambda claims: f"Bearer {session_token(claims)}"),
    st.sampled_from(CLAIM_NAMES).map(lambda name: f"Bearer {session_token({name: None})}"),
    HEADER_TEXT.map(lambda text: f"Bearer {text}"),
    HEADER_TEXT,
)


# --- valid requests, per route ---------------------------------------------------------------------

@dataclass
class Baseline:
    """A valid request to a route: where the fuzzer starts. ``body`` None sends no body."""

    query: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    fields: tuple[str, ...] = ()  # further body fields the route knows, to set to hostile values
    form: dict[str, str] | None = None  # a form body (an admin page's POST) instead of JSON


WEBHOOK_FIELDS = ("id", "admin_graphql_api_id", "email", "customer", "discount_codes", "shop_id", "shop_domain",
                  "orders_to_redact", "orders_requested", "data_request", "myshopify_domain", "domain",
                  "processed_at", "total_price_set", "currency", "financial_status", "line_items")
BASELINES: dict[str, Callable[[Ids], Baseline]] = {
    "api.code_list": lambda ids: Baseline(query={"limit": "10", "status": "open", "program_id": str(ids.program),
                                                 "customer_id": "42", "before": "1000"}),
    "api.metrics_report": lambda ids: Baseline(query={"from": "2026-11-01", "to": "2026-11-30", "daily": "1",
                                                      "program_id": str(ids.program)}),
    "api.program_update": lambda ids: Baseline(body={"active": True},
                                               fields=(*FIELDS, *READ_ONLY)),  # every field the API takes
    "api.code_issue": lambda ids: Baseline(body={"program_id": ids.program, "customer_id": 42},
                                           fields=("idempotency_key",)),
    "api.reconcile_settings": lambda ids: Baseline(body={"interval_minutes": 30}),
    "api.referral_link_list": lambda ids: Baseline(query={"status": "active", "customer_id": "42", "limit": "10",
                                                          "before": "1000"}),
    "api.referral_link_create": lambda ids: Baseline(body={"customer_id": 42}),
    "api.landing_caps": lambda ids: Baseline(query={"link_id": str(ids.link)}),
    "api.landing_caps_settings": lambda ids: Baseline(body={"per_link_per_day": 30, "per_address_per_hour": 4}),
    "api.referral_settings_update": lambda ids: Baseline(body={"hold_days": 7, "first_order_only": False},
                                                         fields=tuple(REFERRAL_SETTINGS)),  # every setting
    "api.referral_list_show": lambda ids: Baseline(query={"status": "held", "link_id": str(ids.link),
                                                          "customer_id": "42", "limit": "10", "before": "1000"}),
    "webhooks.receive": lambda ids: Baseline(body=order_payload(4242, [("WELCOME-FUZZ", "1.00")]),
                                             fields=WEBHOOK_FIELDS),
    "auth.launch": lambda ids: Baseline(query={"shop": SHOP, "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw",
                                               "timestamp": str(int(time.time()))}),
    "auth.callback": lambda ids: Baseline(query={"shop": SHOP, "code": "0907a61c", "state": "x",
                                                 "timestamp": str(int(time.time()))}),
    "auth.begin": lambda ids: Baseline(query={"shop": SHOP}),
    "admin.home": lambda ids: Baseline(query={"shop": SHOP, "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZGVtbw",
                                              "embedded": "1"}),
    "admin.session_token": lambda ids: Baseline(query={"shop": SHOP, "shopify-reload": "/admin/?shop=" + SHOP}),
    "admin.programs": lambda ids: Baseline(query={"shop": SHOP, "notice": "program-saved-welcome"}),
    "admin.program": lambda ids: Baseline(query={"shop": SHOP, "notice": "program-on-welcome"}),
    "admin.program_save": lambda ids: Baseline(  # the welcome program's form, as the page sends it
        query={"shop": SHOP}, form={"name": "Welcome", "active": "1", "value_type": "percentage", "value": "15",
                                    "minimum_subtotal": "", "expires_after_days": "30", "code_prefix": "HI-",
                                    "code_length": "12", "code_pattern": "", "combines_with_order": "0"},
        fields=(*FIELDS, *REFERRAL_SETTINGS)),
    "admin.program_active": lambda ids: Baseline(query={"shop": SHOP}, form={"active": "on"}),
    "api.code_format_sample": lambda ids: Baseline(query={"prefix": "HI-", "length": "12", "alphabet": "ABCDEFGH",
                                                          "pattern": "####-####"}),
    "admin.referrals": lambda ids: Baseline(query={"shop": SHOP, "status": "held", "customer_id": "42",
                                                   "before": "1000"}),
    "admin.referral_links": lambda ids: Baseline(query={"shop": SHOP, "status": "active", "customer_id": "42",
                                                        "before": "1000"}),
    "admin.referral_link_create": lambda ids: Baseline(query={"shop": SHOP}, body={"customer_id": "42"}),
    "admin.health": lambda ids: Baseline(query={"shop": SHOP, "before": "1000"}),
    "admin.codes": lambda ids: Baseline(query={"shop": SHOP, "code": "welcome", "customer_id": "42", "status": "open",
                                               "program_id": str(ids.program), "from": "2026-11-01",
                                               "to": "2026-11-30", "before": "1000"}),
    "admin.codes_csv": lambda ids: Baseline(query={"shop": SHOP, "code": "welcome", "status": "open",
                                                   "program_id": str(ids.program), "from": "2026-11-01"}),
    "admin.code_issue": lambda ids: Baseline(body={"program_id": str(ids.program), "customer_id": "42",
                                                   "request_key": "0" * 32}),
    "proxy.customer_page": lambda ids: Baseline(query={"shop": SHOP, "logged_in_customer_id": "42",
                                                       "path_prefix": "/apps/oncecode",
                                                       "timestamp": str(int(time.time()))}),
    "static": lambda ids: Baseline(),
}


@dataclass(frozen=True)
class Ids:
    """Rows that exist, for the paths' ``<id:…>`` parts."""

    program: int
    code: int
    data_request: int
    link: int
    link_token: str  # a referral link's, for /r/<token>
    referral: int

    def for_path(self, name: str) -> int:
        return {"program_id": self.program, "code_id": self.code, "request_id": self.data_request,
                "link_id": self.link, "referral_id": self.referral}.get(name, 1)


# --- requests --------------------------------------------------------------------------------------

# The store's origin (devstore's, here: SHOPIFY_STORE_BASE_URL points at it) and Shopify's admin.
FRAMED_BY_A_SHOP = re.compile(r"frame-ancestors (https://[a-z0-9][a-z0-9-]*\.myshopify\.com|http://127\.0\.0\.1:[0-9]+)"
                              r" https://admin\.shopify\.com")
CONVERTER_RE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
PATH_VALUES = {
    "id": TEXT,
    "path": st.one_of(st.sampled_from(["../app/__init__.py", "..%2f..%2fpyproject.toml", "a\x00b", "x" * 5000,
                                       "app.css/", "/etc/passwd", "."]), st.text(max_size=40)),
    "default": TEXT,
}
PATH_DEFAULTS = {"path": "app.css"}


def fill_path(rule: Rule, ids: Ids, hostile: Callable[[str], str | None]) -> str:
    """``rule`` with each variable a valid value (an existing row's id), or what ``hostile`` gives."""
    def value(match: re.Match[str]) -> str:
        converter, name = match.group("converter") or "default", match.group("name")
        if converter not in PATH_VALUES:
            raise AssertionError(f"{rule.rule}: no fuzz values for the <{converter}:…> converter; add to PATH_VALUES")
        text = hostile(converter)
        if text is None:
            text = (str(ids.for_path(name)) if converter == "id" else ids.link_token if name == "token"
                    else PATH_DEFAULTS.get(converter, "x"))
        return quote(text, safe="/" if converter == "path" else "")
    return CONVERTER_RE.sub(value, rule.rule)


@dataclass
class Fuzzed:
    """One request, hostile in some parts; the query is signed (and the install begun) as it is sent."""

    method: str
    path: str
    query: dict[str, str] | list[tuple[str, str]]
    raw_tail: str
    headers: dict[str, str]
    body: bytes
    sign_query: bool = False
    sign_proxy: bool = False  # the app proxy's signature over the query as sent, repeats and all
    begin_install: bool = False  # the browser started the install: the callback carries a real code and state
    overrides: dict[str, str] = field(default_factory=dict)  # hostile parameters, kept over the real ones

    def send(self, client: FlaskClient, store: FlaskClient) -> Any:
        pairs = list(self.query.items()) if isinstance(self.query, dict) else self.query
        if self.sign_query:
            params = dict(pairs)
            if self.begin_install:
                params.update({**begun_install(client, store), **self.overrides})
            params.pop("hmac", None)
            params["hmac"] = query_hmac(API_SECRET, params)
            pairs = list(params.items())
        if self.sign_proxy:
            pairs = [(key, value) for key, value in pairs if key != "signature"]
            pairs.append(("signature", proxy_signature(API_SECRET, pairs)))
        query = "&".join(part for part in (urlencode(pairs), self.raw_tail) if part)
        return client.open(self.path, method=self.method, query_string=query, headers=self.headers, data=self.body)


def begun_install(client: FlaskClient, store: FlaskClient) -> dict[str, str]:
    """/auth for the shop, then devstore's (auto-approved) authorize page: its callback's parameters."""
    started = client.get("/auth", query_string={"shop": SHOP})
    authorize = urlsplit(started.headers["Location"])
    approved = store.get(authorize.path, query_string=authorize.query)
    return dict(parse_qsl(urlsplit(approved.headers["Location"]).query))


PARTS = ["method", "path", "query", "query", "headers", "field", "field", "field", "body", "credentials"]


@st.composite
def fuzzed_request(draw: Callable[[Any], Any], rule: Rule, signed: bool, ids: Ids) -> Fuzzed:
    """A valid request to ``rule`` (``BASELINES``, signed as ``ROUTE_AUTH`` says when ``signed``) with
    one or two of its parts made hostile."""
    hostile = draw(st.sets(st.sampled_from(PARTS), min_size=1, max_size=2))
    kind = route_auth(rule.endpoint)
    baseline = BASELINES.get(rule.endpoint, lambda _: Baseline())(ids)
    methods = sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}) or ["GET"]

    method = draw(st.sampled_from(METHODS if "method" in hostile else methods))
    path = fill_path(rule, ids, lambda converter: draw(PATH_VALUES[converter]) if "path" in hostile else None)

    query: dict[str, str] | list[tuple[str, str]] = dict(baseline.query)
    raw_tail, overrides = "", {}
    if "query" in hostile:
        known = sorted(set(baseline.query) | {"shop", "limit", "from", "to", "hmac", "ids[]"})
        extra = draw(st.lists(st.tuples(st.one_of(st.sampled_from(known), TEXT), TEXT), min_size=1, max_size=4))
        overrides = dict(extra)
        query = list(query.items()) + extra if draw(st.booleans()) else {**query, **overrides}  # repeated or replaced
        raw_tail = draw(st.sampled_from(["", *RAW_QUERY_TAILS]))

    body_value: Any = baseline.body
    if baseline.form is not None:  # an admin page's form: one field hostile text, the rest as the page sends them
        form = dict(baseline.form)
        if "field" in hostile:
            form[draw(st.sampled_from(sorted(set(form) | set(baseline.fields))))] = draw(TEXT)
        body_value = None
    elif "field" in hostile:
        names = sorted(set(baseline.body or {}) | set(baseline.fields)) or ["id"]
        changes = {draw(st.sampled_from(names)): draw(FIELD_VALUES)}  # one field: the others stay valid
        if draw(st.integers(0, 3)) == 0:
            changes[draw(st.sampled_from(names))] = draw(FIELD_VALUES)
        body_value = {**(baseline.body or {}), **changes}
    body = b"" if body_value is None else json.dumps(body_value).encode()
    content_type = "application/json"
    if baseline.form is not None:
        body, content_type = urlencode(form).encode(), "application/x-www-form-urlencoded"
    if "body" in hostile:
        body = draw(WHOLE_BODIES)

    headers: dict[str, str] = {"Content-Type": content_type} if body else {}
    if "headers" in hostile:
        for name in draw(st.lists(st.sampled_from(["Content-Type", "Accept", "Idempotency-Key", "X-Forwarded-For",
                                                    "Cookie", "Authorization", "X-Shopify-Hmac-Sha256",
                                                    "X-Shopify-Topic", "X-Shopify-Shop-Domain",
                                                    "X-Shopify-Event-Id", "X-Shopify-Triggered-At"]),
                                  min_size=1, max_size=3, unique=True)):
            headers[name] = draw(st.sampled_from(CONTENT_TYPES) if name == "Content-Type" else HEADER_TEXT)
    fuzzed = Fuzzed(method=method, path=path, query=query, raw_tail=raw_tail, headers=headers, body=body,
                    overrides=overrides)

    credentials_hostile = "credentials" in hostile or not signed
    if kind == "session-token":
        if credentials_hostile:
            if signed or draw(st.booleans()):
                headers["Authorization"] = draw(HOSTILE_AUTHORIZATION)
        else:
            headers.setdefault("Authorization", f"Bearer {session_token()}")
    elif kind == "webhook-hmac":
        delivery = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": SHOP,
                    "X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-Event-Id": str(uuid.uuid4()),
                    "X-Shopify-API-Version": "2026-07", "X-Shopify-Triggered-At": utcnow().isoformat()}
        if "headers" in hostile:
            delivery["X-Shopify-Topic"] = draw(st.one_of(st.sampled_from(TOPICS), HEADER_TEXT))
        headers.update({name: value for name, value in delivery.items() if name not in headers})
        headers["X-Shopify-Hmac-Sha256"] = draw(HEADER_TEXT) if credentials_hostile else webhook_signature(body)
    elif kind in ("launch-hmac", "oauth-callback"):
        fuzzed.sign_query = not credentials_hostile
        fuzzed.begin_install = kind == "oauth-callback" and fuzzed.sign_query and draw(st.booleans())
    elif kind == "proxy-signature":
        fuzzed.sign_proxy = not credentials_hostile
    elif kind == "id-token":
        query = fuzzed.query = dict(query) if isinstance(query, dict) else query
        token = draw(TEXT) if credentials_hostile else session_token()
        if isinstance(query, dict):
            query.setdefault("id_token", token)
        else:
            query.append(("id_token", token))
    return fuzzed


# --- the app under fire ----------------------------------------------------------------------------

@dataclass
class Target:
    app: Flask
    store: FlaskClient
    ids: Ids
    reached: Counter[str]


@pytest.fixture
def target(app_factory) -> Iterator[Target]:  # type: ignore[no-untyped-def]
    """The app with the public rate limit out of the way, an installed shop with a code and a data
    request (so that valid ids and tokens reach the deep paths), devstore as its store over HTTP (an
    OAuth callback with a real code installs for real), and a count of the routes reached."""
    store = devstore.create_app(DevstoreConfig(api_key=API_KEY, api_secret=API_SECRET, auto_approve=True,
                                               deliver_webhooks=False))
    server = serve(store, listening())
    port = server.port
    app = app_factory(public_rate_limit="100000 per minute",
                      shopify_store_base_url=f"http://127.0.0.1:{port}/stores/{{shop}}")
    reached: Counter[str] = Counter()

    @app.after_request
    def _count(response):  # type: ignore[no-untyped-def]
        if request.url_rule is not None:
            reached[request.url_rule.rule] += 1
        return response

    rt = app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        shop = make_shop_with_programs(session, rt.cipher, domain=SHOP)
        shop.scopes = DEFAULT_SCOPES  # all we ask for: the admin's pages exchange no token for it
        code = issued_code(session, shop, "WELCOME-FUZZ")
        data_request = DataRequest(shop_id=shop.id, shopify_request_id=1, shopify_customer_id=42,
                                   data={"orders": []})
        session.add(data_request)
        link, _ = referrals.create_link(session, shop.id, 42)
        session.flush()
        referral = a_referral(session, shop, advocate=42)
        ids = Ids(program=program_of(session, shop).id, code=code.id, data_request=data_request.id, link=link.id,
                  link_token=link.token, referral=referral.id)
    yield Target(app, store.test_client(), ids, reached)
    server.shutdown()
    server.server_close()
    store.extensions["devstore"].engine.dispose()


def fuzzed_rules(app: Flask) -> list[tuple[Rule, bool]]:
    """(rule, signed) for every route: unsigned always, signed where the route has a signature."""
    runs = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, sorted(r.methods or ()))):
        runs.append((rule, False))
        kind = route_auth(rule.endpoint)
        if kind not in (None, "none"):
            runs.append((rule, True))
    return runs


def test_every_route_says_how_it_is_signed(target):
    undeclared = [f"{rule.rule} ({rule.endpoint})" for rule in target.app.url_map.iter_rules()
                  if route_auth(rule.endpoint) is None]
    assert not undeclared, f"add these routes' blueprint or endpoint to ROUTE_AUTH in {__file__}: {undeclared}"


# The routes are split in shards, so that pytest-xdist (make test) spreads them over its workers: seven,
# an odd number, so that the signed runs (every other run, and the costlier ones) spread over all of
# them; with four, shards 1 and 3 had them all and took 20 s each against 11 s, the suite's last tests.
SHARDS = 7


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_hostile_request_gets_a_5xx(target, shard):
    client = target.app.test_client()
    runs = [(rule, signed) for rule, signed in fuzzed_rules(target.app) if FUZZ_ROUTES in rule.rule][shard::SHARDS]
    for rule, signed in runs:
        _fuzz(client, target, rule, signed)
    # Each route was reached by generated requests, not only by 404s beside it.
    missed = [rule.rule for rule, _ in runs if target.reached[rule.rule] == 0]
    assert not missed, f"no generated request reached {missed}"


def _fuzz(client: FlaskClient, target: Target, rule: Rule, signed: bool) -> None:
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=not FUZZ_RANDOM, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzzed_request(rule, signed, target.ids))
    def one_request(fuzzed: Fuzzed) -> None:
        response = fuzzed.send(client, target.store)
        assert response.status_code < 500, (
            f"{fuzzed.method} {rule.rule} ({'signed' if signed else 'unsigned'}) answered "
            f"{response.status_code}: {response.get_data()[:300]!r}")
        # The security headers hold on every answer, whatever was sent (app/headers.py).
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if response.mimetype == "text/html":  # framed only by a shop the request proved, never unsigned
            policy = response.headers["Content-Security-Policy"]
            proved = signed or route_auth(rule.endpoint) == "claimed-shop"
            assert policy == "frame-ancestors 'none'" or proved and FRAMED_BY_A_SHOP.fullmatch(policy), policy

    one_request()
