"""Requests Shopify forwards through the app proxy: their ``signature`` and what it vouches for.

A storefront request to ``https://{shop}/{prefix}/{subpath}/...`` reaches the proxy URL with the
visitor's own query parameters plus Shopify's: ``shop``, ``logged_in_customer_id`` (empty when nobody is
logged in), ``path_prefix`` (e.g. ``/apps/oncecode``), ``timestamp`` and ``signature``.

The signature is not the OAuth ``hmac``. Shopify's algorithm ("Authenticate app proxies"; the same in
``Shopify/shopify-app-js`` ``lib/utils/hmac-validator.ts`` and ``shopifyapp``'s ``verify_app_proxy_req``):
leave out ``signature``; join the values of a repeated key with ``,`` in the order they came; write each
key as ``key=value`` with the value decoded; sort by key; concatenate with **no separator**; hex
HMAC-SHA256 with the client secret.

Two rules on top, as both libraries have them:

- the timestamp is at most 90 s away from now, either way (a replayed URL stops working);
- ``shop``, ``logged_in_customer_id``, ``path_prefix``, ``timestamp`` and ``signature`` appear once. The
  visitor writes the rest of the query: ``/apps/oncecode?logged_in_customer_id=42`` is forwarded with
  Shopify's own ``logged_in_customer_id`` added, and the signature covers ``42,<theirs>`` — correctly
  signed, and a reader taking the first value would show customer 42's page to someone else.

Written here rather than by calling ``shopifyapp`` (DESIGN.md prefers it for such checks): its
``verify_app_proxy_req`` refuses a repeated ``shop`` only, does not check the shop's domain, and raises
``TypeError`` on a non-ASCII signature (a 500 where a 400 is due). tests/shopify/test_proxy.py holds
this module to Shopify's documented example and to vectors ``shopifyapp`` 1.0.2 accepts.

This module knows nothing of Flask, the database or programs: it answers what a query proves.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from app.errors import BadRequest, Unauthorized
from app.shopify.verify import valid_shop_domain

# Shopify's documented window, in both directions (shopifyapp and shopify-app-js compare |now - timestamp|).
MAX_SKEW_SECONDS = 90
# Parameters Shopify adds and the app trusts: each must come exactly once (see the module docstring).
SINGLE_VALUED = ("shop", "logged_in_customer_id", "path_prefix", "timestamp", "signature")
SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
CUSTOMER_ID_RE = re.compile(r"[1-9][0-9]{0,18}")  # a Shopify id: positive, below 2**63
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True)
class ProxyRequest:
    """What a verified proxy request vouches for."""

    shop: str  # the myshopify domain, lower case
    customer_id: int | None  # the logged-in customer's Shopify id; None when nobody is logged in
    path_prefix: str  # where the store serves the proxy, e.g. "/apps/oncecode" (merchants can change it)


def signed_message(pairs: Iterable[tuple[str, str]]) -> str:
    """The text Shopify signs: every parameter but ``signature``, repeated values joined by ``,``,
    sorted by key, ``key=value`` concatenated without a separator."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        if key != "signature":
            grouped.setdefault(key, []).append(value)
    return "".join(f"{key}={','.join(values)}" for key, values in sorted(grouped.items()))


def proxy_signature(secret: str, pairs: Iterable[tuple[str, str]]) -> str:
    """The ``signature`` Shopify adds to a proxied request with these (decoded) query parameters."""
    return hmac.new(secret.encode(), signed_message(pairs).encode(), hashlib.sha256).hexdigest()


def verify_proxy_request(pairs: Iterable[tuple[str, str]], secrets: Iterable[str],
                         now: float | None = None) -> ProxyRequest:
    """Check a proxied request's query (its decoded ``(key, value)`` pairs, in order, repeats kept).

    ``secrets``: the current client secret, then the previous one during a rotation. Raises
    ``BadRequest`` for a query Shopify never sends (a repeated identity parameter, a malformed
    signature, timestamp, shop or customer id) and ``Unauthorized`` for one it did not sign (no
    signature, a stale or future timestamp, a signature that matches no secret).
    """
    pairs = list(pairs)
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    for name in SINGLE_VALUED:
        if len(values.get(name, ())) > 1:
            raise BadRequest(f"app proxy parameter {name!r} appears more than once; Shopify sends it once")

    given = values.get("signature", [""])[0]
    if not given:
        raise Unauthorized("missing app proxy signature")
    if not SIGNATURE_RE.fullmatch(given):
        raise BadRequest("the app proxy signature must be 64 hexadecimal characters")

    stamp = values.get("timestamp", [""])[0]
    if not stamp:
        raise Unauthorized("missing app proxy timestamp")
    if not TIMESTAMP_RE.fullmatch(stamp):
        raise BadRequest("the app proxy timestamp must be a whole number of seconds since 1970")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > MAX_SKEW_SECONDS:
        raise Unauthorized(f"the app proxy timestamp is more than {MAX_SKEW_SECONDS} seconds from now "
                           "(a replayed link, or a clock that is off)")

    # Bytes of ASCII hex on both sides: compare_digest is constant-time and never raises here.
    claimed = given.lower().encode()
    if not any(hmac.compare_digest(proxy_signature(secret, pairs).encode(), claimed) for secret in secrets):
        raise Unauthorized("invalid app proxy signature")

    shop = valid_shop_domain(values.get("shop", [""])[0])
    if shop is None:
        raise BadRequest("the app proxy parameter 'shop' must be a {name}.myshopify.com domain")
    customer = values.get("logged_in_customer_id", [""])[0]
    if customer and not (CUSTOMER_ID_RE.fullmatch(customer) and int(customer) <= MAX_BIGINT):
        raise BadRequest("the app proxy parameter 'logged_in_customer_id' must be empty or a Shopify customer id")
    return ProxyRequest(shop=shop, customer_id=int(customer) if customer else None,
                        path_prefix=values.get("path_prefix", [""])[0])
