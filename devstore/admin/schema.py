"""Shopify's Admin API schema, from the repository's subset file, with devstore's resolvers attached.

The SDL is ``app/shopify/admin-2026-07.subset.graphql`` — the copy the app's own documents are
validated against — so a misspelt field or a wrong input shape fails here exactly as it would on
Shopify. It is built once per process. A root field without a resolver here is not implemented by
devstore, and a document that selects it is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from graphql import (
    FloatValueNode,
    GraphQLSchema,
    IntValueNode,
    StringValueNode,
    ValueNode,
    build_schema,
    is_abstract_type,
)
from sqlalchemy.orm import Session

import app.shopify
from devstore.admin import discounts, jobs, metafields, redeem_codes, resources, webhooks
from devstore.admin.objects import decimal_text, iso

SCHEMA_FILE = Path(app.shopify.__file__).parent / "admin-2026-07.subset.graphql"

QUERY_FIELDS: dict[str, Callable[..., Any]] = {
    "shop": resources.shop,
    "customer": resources.customer,
    "customers": resources.customers,
    "customersCount": resources.customers_count,
    "order": resources.order,
    "orders": resources.orders,
    "ordersCount": resources.orders_count,
    "node": resources.node,
    "nodes": resources.nodes,
    "codeDiscountNode": resources.code_discount_node,
    "codeDiscountNodeByCode": resources.code_discount_node_by_code,
    "discountNode": resources.discount_node,
    "discountRedeemCodeBulkCreation": redeem_codes.discount_redeem_code_bulk_creation,
    "job": jobs.job,
    "webhookSubscription": webhooks.webhook_subscription,
    "webhookSubscriptions": webhooks.webhook_subscriptions,
    "webhookSubscriptionsCount": webhooks.webhook_subscriptions_count,
}
MUTATION_FIELDS: dict[str, Callable[..., Any]] = {
    "discountCodeBasicCreate": discounts.discount_code_basic_create,
    "discountCodeFreeShippingCreate": discounts.discount_code_free_shipping_create,
    "discountCodeActivate": discounts.discount_code_activate,
    "discountCodeDeactivate": discounts.discount_code_deactivate,
    "discountCodeDelete": discounts.discount_code_delete,
    "discountCodeBulkDelete": discounts.discount_code_bulk_delete,
    "discountRedeemCodeBulkAdd": redeem_codes.discount_redeem_code_bulk_add,
    "discountCodeRedeemCodeBulkDelete": redeem_codes.discount_code_redeem_code_bulk_delete,
    "metafieldsSet": metafields.metafields_set,
    "metafieldsDelete": metafields.metafields_delete,
    "metafieldDefinitionCreate": metafields.metafield_definition_create,
    "tagsAdd": resources.tags_add,
    "tagsRemove": resources.tags_remove,
    "webhookSubscriptionCreate": webhooks.webhook_subscription_create,
    "webhookSubscriptionUpdate": webhooks.webhook_subscription_update,
    "webhookSubscriptionDelete": webhooks.webhook_subscription_delete,
}
# The scope a root field needs, as Shopify enforces it (``write_x`` includes ``read_x``). Fields whose
# need depends on the object (node, metafieldsSet, tagsAdd) are checked where the object is known.
ROOT_SCOPES: dict[str, str] = {
    "customer": "read_customers", "customers": "read_customers", "customersCount": "read_customers",
    "order": "read_orders", "orders": "read_orders", "ordersCount": "read_orders",
    "codeDiscountNode": "read_discounts", "codeDiscountNodeByCode": "read_discounts", "discountNode": "read_discounts",
    "discountRedeemCodeBulkCreation": "read_discounts",
    "discountCodeBasicCreate": "write_discounts", "discountCodeFreeShippingCreate": "write_discounts",
    "discountCodeActivate": "write_discounts", "discountCodeDeactivate": "write_discounts",
    "discountCodeDelete": "write_discounts", "discountCodeBulkDelete": "write_discounts",
    "discountRedeemCodeBulkAdd": "write_discounts", "discountCodeRedeemCodeBulkDelete": "write_discounts",
}
# What each kind of asynchronous job does when its moment comes (``devstore.admin.jobs``).
JOB_RUNNERS: dict[str, jobs.Runner] = {discounts.BULK_DELETE: discounts.run_bulk_delete,
                                       redeem_codes.BULK_ADD: redeem_codes.run_bulk_add,
                                       redeem_codes.BULK_DELETE_CODES: redeem_codes.run_redeem_code_delete}


# --- custom scalars ---------------------------------------------------------------------------------

def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 input time; without an offset it is taken as UTC."""
    if not isinstance(value, str):
        raise TypeError(f"DateTime must be an ISO 8601 string, not {value!r}")
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def serialize_datetime(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else str(value)


def parse_decimal(value: Any) -> Decimal:
    """Shopify's ``Decimal`` input: a string or a number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"Decimal must be a string or a number, not {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"invalid decimal {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"invalid decimal {value!r}")
    return number


def parse_unsigned(value: Any) -> int:
    """``UnsignedInt64`` input: a non-negative integer, as a number or a string of digits."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise TypeError(f"UnsignedInt64 must be a non-negative integer, not {value!r}")
    number = int(value)
    if not 0 <= number < 2**64:
        raise ValueError(f"{value!r} is out of range for UnsignedInt64")
    return number


def parse_text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _literal(parse: Callable[[Any], Any], *kinds: type[ValueNode]) -> Callable[..., Any]:
    """A ``parse_literal`` that accepts the given literal kinds and parses their text."""
    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        if not isinstance(node, kinds):
            raise TypeError(f"unexpected literal {type(node).__name__}")
        return parse(node.value)  # type: ignore[attr-defined]
    return parse_literal


SCALARS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any], tuple[type[ValueNode], ...]]] = {
    "DateTime": (serialize_datetime, parse_datetime, (StringValueNode,)),
    "Decimal": (decimal_text, parse_decimal, (StringValueNode, IntValueNode, FloatValueNode)),
    "UnsignedInt64": (str, parse_unsigned, (StringValueNode, IntValueNode)),
    "URL": (str, parse_text, (StringValueNode,)),
}


def install_scalars(schema: GraphQLSchema) -> None:
    """Give the SDL's plain custom scalars Shopify's behaviour.

    graphql-core 3.2 calls ``serialize``/``parse_value``/``parse_literal``; 3.3 calls
    ``coerce_output_value``/``coerce_input_value`` (and ``parse_literal`` when no ``coerce_input_literal``
    is set): both sets are installed, so either version runs the same code.
    """
    for name, (serialize, parse, kinds) in SCALARS.items():
        scalar: Any = schema.type_map[name]
        scalar.serialize = scalar.coerce_output_value = serialize
        scalar.parse_value = scalar.coerce_input_value = parse
        scalar.parse_literal = _literal(parse, *kinds)
        scalar.coerce_input_literal = None


def install_resolvers(schema: GraphQLSchema) -> None:
    """Root fields get their resolvers; unions and interfaces learn a value's type from the value."""
    assert schema.query_type is not None and schema.mutation_type is not None
    for root, table in ((schema.query_type, QUERY_FIELDS), (schema.mutation_type, MUTATION_FIELDS)):
        for name, resolver in table.items():
            root.fields[name].resolve = resolver
    for named in schema.type_map.values():
        if is_abstract_type(named):
            named.resolve_type = lambda value, _info, _abstract: value.typename  # type: ignore[attr-defined]


@cache
def admin_schema() -> GraphQLSchema:
    """The Admin API schema devstore serves (built once; nothing happens at import time)."""
    schema = build_schema(SCHEMA_FILE.read_text())
    install_scalars(schema)
    install_resolvers(schema)
    return schema


def root_implemented(schema: GraphQLSchema, root_name: str, field: str) -> bool:
    """Whether devstore answers this root field (it has a resolver)."""
    root = schema.get_type(root_name)
    return field.startswith("__") or getattr(root.fields.get(field), "resolve", None) is not None  # type: ignore[union-attr]


def run_due_jobs(session: Session) -> int:
    """The store's jobs that are due, run now (a ``State.on_session`` hook, installed by ``create_app``)."""
    return jobs.run_due(session, JOB_RUNNERS)
