"""What people type, parsed strictly: ids, whole numbers and dates, one way each for the API and the CLI.

Python's own helpers are too lenient for input from outside: ``str.isdigit()`` accepts ``"²"``, which
``int()`` then refuses (a 500); ``int()`` accepts ``"٣"``, ``" 3 "``, ``"+3"`` and ``"3_000"``;
``date.fromisoformat`` accepts ``"20261130"`` and ``"2026-W48-1"``; and an id too large for its
column reaches the database and fails there (another 500). Ids are checked against their columns:
our own rows' ids are PostgreSQL ``integer`` (serial) keys, up to 2^31 - 1; Shopify's ids (customers,
orders) are 64-bit, stored as ``bigint``, up to 2^63 - 1. Everything here
raises ``BadRequest`` naming the parameter and what it takes; the API answers it as a 400 and the
CLI as a usage error.
"""

from __future__ import annotations

import re
from datetime import date

from app.errors import BadRequest

ROW_ID_MAX = 2**31 - 1  # our primary keys: PostgreSQL integer (and well within SQLite's 64 bits)
SHOPIFY_ID_MAX = 2**63 - 1  # Shopify's ids: int64, our bigint columns
FIRST_DAY = date(2000, 1, 1)  # dates outside these are typos, and the far ones overflow datetime
LAST_DAY = date(2100, 12, 31)

_DIGITS_RE = re.compile(r"[0-9]{1,20}")  # ASCII only; 20 digits covers every int64
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SHOWN = 40  # characters of a refused value repeated in the message


def shown(value: object) -> str:
    """``repr(value)``, cut short: a message repeats what it refuses without echoing a megabyte."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def whole_number(text: str, name: str, low: int, high: int) -> int:
    """``text`` as an int from ``low`` to ``high``: ASCII digits only, no sign, no spaces."""
    if not _DIGITS_RE.fullmatch(text) or not low <= int(text) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {shown(text)}")
    return int(text)


def is_id(value: object, high: int = ROW_ID_MAX) -> bool:
    """Whether ``value`` is an int (not a bool) from 1 to ``high``: one of our rows' ids by default."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def parse_id(value: object, name: str, high: int = ROW_ID_MAX) -> int:
    """An id from JSON (a number) or text (ASCII digits), from 1 to ``high`` (``SHOPIFY_ID_MAX`` for
    Shopify's ids)."""
    if is_id(value, high):
        return value  # type: ignore[return-value]
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value) and is_id(int(value), high):
        return int(value)
    raise BadRequest(f"{name} must be an id: a whole number from 1 to {high}, not {shown(value)}")


def parse_shopify_id(value: object, name: str) -> int:
    """A Shopify id (a customer's, an order's): 1 to 2^63 - 1."""
    return parse_id(value, name, SHOPIFY_ID_MAX)


def storable_text(value: object, where: str) -> None:
    """Refuse, in any string of a parsed JSON value (keys too), a NUL character or a lone surrogate
    (JSON's ``"\\ud800"``): PostgreSQL text holds neither, so they would fail at the database."""
    pending = [value]
    while pending:  # not recursive: the parser already went as deep as it could
        item = pending.pop()
        if isinstance(item, str) and ("\x00" in item or not is_utf8(item)):
            raise BadRequest(f"{where} must not contain NUL characters or unpaired surrogates "
                             f"(\\u0000, \\ud800), as in {shown(item)}")
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8: no lone surrogates (from JSON's ``"\\ud800"``, or from a
    command line's bytes that were not UTF-8, which Python decodes to surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


IDEMPOTENCY_KEY_MAX = 100


def idempotency_key(value: object, name: str) -> str | None:
    """An idempotency key (a code issued by hand): a string of 1 to 100 characters PostgreSQL can store,
    or None for none. The API and the CLI take the same keys."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX:
        raise BadRequest(f"{name} must be a string of 1 to {IDEMPOTENCY_KEY_MAX} characters")
    storable_text(value, name)
    return value


def parse_date(text: str, name: str) -> date:
    """A ``YYYY-MM-DD`` day from 2000-01-01 to 2100-12-31."""
    try:
        day = date.fromisoformat(text) if _DATE_RE.fullmatch(text) else None
    except ValueError:
        day = None
    if day is None:
        raise BadRequest(f"{name} must be a date like 2026-11-30, not {shown(text)}")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadRequest(f"{name} must be a date from {FIRST_DAY} to {LAST_DAY}, not {text}")
    return day
