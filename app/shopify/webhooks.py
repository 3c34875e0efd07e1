"""What a signed webhook body must be before anything trusts it.

The HMAC proves that the bytes were signed with the app secret, nothing more. It covers the body,
not the headers, so a body signed for one shop can be replayed with another shop's
``X-Shopify-Shop-Domain``; and the same secret signs session tokens and OAuth callbacks, so anyone who
installs the app on a development store can obtain "validly signed" bytes. Shopify itself only ever
sends a UTF-8 JSON object whose ids are 64-bit integers, so anything else is refused here (the web
answers 400 with the reason) before it is stored or queued.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# Shopify's ids are 64-bit signed integers (the Admin API's ``ID``/``legacyResourceId``, our BigInteger columns).
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
# Lone UTF-16 surrogates (from escapes such as "\ud800") cannot be encoded as UTF-8 anywhere downstream.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Strict UTF-8 decoding and strict JSON let a NUL or a surrogate into a parsed string only through a
# \u escape, so the body's strings are walked only when its text holds one that could be such.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")

# Privacy topics Shopify sends to every app (subscribed in shopify.app.toml only); each names its shop.
COMPLIANCE_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})

# The ids each handled topic's job reads: (path, required). A path ending in "[]" is a list of ids.
ID_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    "app/uninstalled": (("id", False),),
    "customers/create": (("id", True),),
    "orders/paid": (("id", True), ("customer.id", False)),
    "orders/cancelled": (("id", True), ("customer.id", False)),
    "refunds/create": (("id", True), ("order_id", True)),
    "customers/data_request": (("shop_id", False), ("customer.id", True), ("data_request.id", True),
                               ("orders_requested[]", False)),
    "customers/redact": (("shop_id", False), ("customer.id", True), ("orders_to_redact[]", False)),
    "shop/redact": (("shop_id", False),),
}


class RefusedBody(ValueError):
    """A signed body we will not store or act on; the message says why, in plain words."""


def parse(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``RefusedBody`` naming what is wrong with it."""
    try:
        text = body.decode("utf-8")  # strict: UTF-16 and Latin-1 bodies are refused, not guessed at
    except UnicodeDecodeError as exc:
        raise RefusedBody(f"body is not UTF-8 text (byte {exc.start})") from None
    try:
        payload = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise RefusedBody("body is not acceptable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError (a BOM too), integers over Python's digit limit, NaN
        raise RefusedBody(f"body is not JSON: {_short(str(exc))}") from None
    if not isinstance(payload, dict):
        raise RefusedBody(f"body is not a JSON object (it is {_kind(payload)})")
    if _SUSPECT_ESCAPE.search(text):
        _check_strings(payload)
    return payload


def check_shop(topic: str, payload: Mapping[str, Any], shop: str) -> None:
    """Refuse a body that names a shop other than ``shop`` (the verified-format header, lower case)."""
    for field, value in _named_shops(topic, payload):
        if not isinstance(value, str) or value.strip().lower() != shop:
            raise RefusedBody(f"body's {field} does not match the X-Shopify-Shop-Domain header")


def check_ids(topic: str, payload: Mapping[str, Any]) -> None:
    """Refuse a body whose ids (the ones the topic's job reads) are missing, not numbers, or beyond 64 bits."""
    for path, required in ID_FIELDS.get(topic, ()):
        for where, value in _values_at(payload, path, required):
            if not _valid_id(value):
                raise RefusedBody(f"body's {where} is not a positive integer below 2^63")


def _named_shops(topic: str, payload: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The body's fields that name a shop, with their values."""
    if topic in COMPLIANCE_TOPICS:
        # Shopify always sends shop_domain on these: a body without it names no shop that could be checked.
        return [("shop_domain", payload.get("shop_domain"))]
    if topic == "app/uninstalled":
        # The Shop resource. myshopify_domain is the shop's myshopify name; domain is its *primary*
        # domain, often the merchant's own (www.example.com), so it says something only when it is a
        # myshopify name and myshopify_domain is absent (Shopify's sample payload has it null).
        if payload.get("myshopify_domain") is not None:
            return [("myshopify_domain", payload["myshopify_domain"])]
        domain = payload.get("domain")
        if isinstance(domain, str) and domain.strip().lower().endswith(".myshopify.com"):
            return [("domain", domain)]
    return []


def _values_at(payload: Mapping[str, Any], path: str, required: bool) -> list[tuple[str, Any]]:
    """The values at a dotted ``path`` (``"customer.id"``, ``"orders_requested[]"``), with their names."""
    *parents, leaf = path.split(".")
    node: Any = payload
    walked: list[str] = []
    for part in parents:
        walked.append(part)
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            if required:
                raise RefusedBody(f"body has no {'.'.join(walked)}")
            return []
        if not isinstance(node, Mapping):
            raise RefusedBody(f"body's {'.'.join(walked)} is not an object")
    name = ".".join([*walked, leaf.removesuffix("[]")])
    value = node.get(leaf.removesuffix("[]"))
    if value is None:
        if required:
            raise RefusedBody(f"body has no {name}")
        return []
    if leaf.endswith("[]"):
        if not isinstance(value, list):
            raise RefusedBody(f"body's {name} is not a list")
        return [(f"{name}[{index}]", item) for index, item in enumerate(value)]
    return [(name, value)]


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            return False
        value = int(value)
    return isinstance(value, int) and 0 < value <= MAX_ID


def _check_strings(payload: dict[str, Any]) -> None:
    """Refuse NUL characters (PostgreSQL text cannot hold them) and lone surrogates, in keys and values.

    Iterative, so a body nested as deep as ``json`` allows cannot exhaust the stack here.
    """
    stack: list[Any] = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            if "\x00" in node:
                raise RefusedBody("body contains a NUL character (\\u0000)")
            if _SURROGATE.search(node):
                raise RefusedBody("body contains an unpaired UTF-16 surrogate escape")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
