"""Shopify's search syntax for the ``orders`` query, as far as devstore can answer it exactly.

``updated_at:>'2026-11-01T00:00:00Z' financial_status:paid`` — terms are ``field:value`` with an
optional comparator (``>``, ``>=``, ``<``, ``<=``), values bare or quoted, joined by spaces or ``AND``.
Anything else (``OR``, negation, free text, another field) is refused with a clear error rather than
silently ignored, which would return the wrong orders.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from graphql import GraphQLError

from devstore.models import Order

TERM_RE = re.compile(r"""(?P<neg>-)?(?P<field>[A-Za-z_]+):(?P<op>>=|<=|>|<)?(?P<value>'[^']*'|"[^"]*"|\S+)""")
COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "": operator.eq,
}
FINANCIAL_STATUSES = {"pending", "authorized", "partially_paid", "paid", "partially_refunded", "refunded",
                      "voided", "expired"}
DATE_FIELDS = {"created_at": "created_at", "updated_at": "updated_at", "processed_at": "processed_at"}
SUPPORTED = ("created_at", "updated_at", "processed_at", "financial_status", "id", "customer_id",
             "discount_code", "name", "email", "tag")

OrderFilter = Callable[[Order], bool]


class SearchError(GraphQLError):
    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "DEVSTORE_UNSUPPORTED_SEARCH"})


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str


def tokens(query: str) -> list[Term]:
    """Split a query into terms; refuse the syntax devstore does not evaluate."""
    terms: list[Term] = []
    for word in re.finditer(r"""(?:[^\s'"]+|'[^']*'|"[^"]*")+""", query):
        text = word.group(0)
        if text == "AND":
            continue
        match = TERM_RE.fullmatch(text)
        if match is None or match["neg"] or text in ("OR", "NOT"):
            raise SearchError(f"devstore's order search supports only `field:value` terms joined by AND, "
                              f"not {text!r} (fields: {', '.join(SUPPORTED)})")
        terms.append(Term(match["field"].lower(), match["op"] or "", match["value"].strip("'\"")))
    return terms


def _moment(text: str) -> tuple[datetime, bool]:
    """A search time: ISO 8601 (UTC when no offset is given) or a date; True when it was a date."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), UTC), True
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SearchError(f"Invalid timestamp for query filter: {text!r}") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), False


def _date_filter(term: Term) -> OrderFilter:
    attribute = DATE_FIELDS[term.field]
    moment, whole_day = _moment(term.value)
    if whole_day and term.op == "":
        end = moment + timedelta(days=1)
        return lambda order: moment <= getattr(order, attribute) < end
    compare = COMPARATORS[term.op]
    return lambda order: compare(getattr(order, attribute), moment)


def _int(term: Term) -> int:
    value = term.value.rsplit("/", 1)[-1]  # a gid is accepted where an id is
    if not value.isdigit():
        raise SearchError(f"Invalid value for query filter `{term.field}`: {term.value!r}")
    return int(value)


def _equality(term: Term) -> None:
    if term.op:
        raise SearchError(f"devstore's order search cannot compare `{term.field}` with {term.op!r}")


def term_filter(term: Term) -> OrderFilter:
    """One term as a predicate over orders."""
    if term.field in DATE_FIELDS:
        return _date_filter(term)
    if term.field == "id":
        number, compare = _int(term), COMPARATORS[term.op]
        return lambda order: compare(order.id, number)
    _equality(term)
    wanted = term.value.lower()
    if term.field == "financial_status":
        if wanted not in FINANCIAL_STATUSES | {"any"}:
            raise SearchError(f"Invalid value for query filter `financial_status`: {term.value!r}")
        return lambda order: wanted == "any" or order.financial_status == wanted
    if term.field == "customer_id":
        number = _int(term)
        return lambda order: order.customer_id == number
    if term.field == "discount_code":
        return lambda order: any(str(entry.get("code", "")).lower() == wanted for entry in order.discount_codes)
    if term.field == "name":
        return lambda order: f"#{order.number}" == term.value or str(order.number) == term.value
    if term.field == "email":
        return lambda order: (order.email or "").lower() == wanted
    if term.field == "tag":
        return lambda order: wanted in {t.lower() for t in order.tags or []}
    raise SearchError(f"devstore's order search does not support the `{term.field}` filter "
                      f"(supported: {', '.join(SUPPORTED)})")


def order_filter(query: str | None) -> OrderFilter:
    """The conjunction of the query's terms (every order when the query is empty)."""
    filters = [term_filter(term) for term in tokens(query or "")]
    return lambda order: all(check(order) for check in filters)
