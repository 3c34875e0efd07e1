"""Relay connections as Shopify serves them: ``first``/``after``, ``last``/``before``, opaque cursors.

Cursors are base64 JSON ``{"last_id": …, "last_value": …}``, the shape of Shopify's own cursors
(see the ``orders`` sample). Pages are cut by key (sort value, id), not by offset, so a row added or
removed between two calls neither repeats nor skips another.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from graphql import GraphQLError

from devstore.admin.objects import Plain

T = TypeVar("T")
MAX_PAGE_SIZE = 250
Key = tuple[Any, int]


def sort_value(value: Any) -> Any:
    """A JSON value that orders like ``value`` (times as fixed-width UTC text, money as float)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, Decimal):
        return float(value)
    return value


def encode_cursor(key: Key) -> str:
    raw = json.dumps({"last_id": key[1], "last_value": key[0]}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Key:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), validate=True)
        data = json.loads(raw)
        return data["last_value"], int(data["last_id"])
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise GraphQLError(f"Invalid cursor for current pagination: {cursor!r}",
                           extensions={"code": "BAD_REQUEST"}) from exc


def _position(keys: Sequence[Key], cursor: Key, reverse: bool, *, strictly_after: bool) -> int:
    """Index of the first key after the cursor (``strictly_after``) or of the first not before it."""
    try:
        for index, key in enumerate(keys):
            after = key < cursor if reverse else key > cursor
            before = key > cursor if reverse else key < cursor
            if (strictly_after and after) or (not strictly_after and not before):
                return index
    except TypeError as exc:  # a cursor from another connection (values of another type)
        raise GraphQLError("Invalid cursor for current pagination", extensions={"code": "BAD_REQUEST"}) from exc
    return len(keys)


def page(items: Sequence[T], key: Callable[[T], Key], args: dict[str, Any]) -> tuple[list[tuple[str, T]], Plain]:
    """One page of ``items`` (unsorted) for the connection arguments; returns (cursor, item) pairs and PageInfo."""
    reverse = bool(args.get("reverse"))
    ordered = sorted(items, key=key, reverse=reverse)
    keys = [key(item) for item in ordered]
    low, high = 0, len(ordered)
    if args.get("after"):
        low = _position(keys, decode_cursor(args["after"]), reverse, strictly_after=True)
    if args.get("before"):
        high = max(low, _position(keys, decode_cursor(args["before"]), reverse, strictly_after=False))
    if args.get("first") is not None:
        high = min(high, low + args["first"])
    if args.get("last") is not None:
        low = max(low, high - args["last"])
    window = [(encode_cursor(keys[i]), ordered[i]) for i in range(low, high)]
    info = Plain("PageInfo", hasNextPage=high < len(ordered), hasPreviousPage=low > 0,
                 startCursor=window[0][0] if window else None, endCursor=window[-1][0] if window else None)
    return window, info


def connection(node_type: str, items: Sequence[T], key: Callable[[T], Key], args: dict[str, Any],
               wrap: Callable[[T], Any]) -> Plain:
    """A ``<node_type>Connection`` with ``edges``, ``nodes`` and ``pageInfo`` for one page."""
    window, info = page(items, key, args)
    nodes = [wrap(item) for _, item in window]
    edges = [Plain(f"{node_type}Edge", cursor=cursor, node=node)
             for (cursor, _), node in zip(window, nodes, strict=True)]
    return Plain(f"{node_type}Connection", edges=edges, nodes=nodes, pageInfo=info)
