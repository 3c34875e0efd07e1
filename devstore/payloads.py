"""Webhook payloads in Shopify's REST shape (snake_case, integer ids, money as strings).

Every top-level field of the published samples (``shared/reference/samples/webhook-*.json``) is
present with the same JSON type; a test holds each builder to its sample. Values a pretend store has
no notion of (fulfilment, taxes, duties, browser details) take what a paid, unfulfilled, untaxed web
order on a Bogus-gateway test store carries.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from devstore.models import Customer, Order, Refund, Store

CENT = Decimal("0.01")
# A pretend store has no address settings; every store is "in" one place, consistent with EUR.
STORE_ADDRESS = {"address1": "1 Devstore Strasse", "address2": None, "city": "Berlin", "zip": "10115",
                 "province": "Berlin", "province_code": "BE", "country": "DE", "country_code": "DE",
                 "country_name": "Germany", "timezone": "(GMT+01:00) Europe/Berlin",
                 "iana_timezone": "Europe/Berlin"}
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "CAD": "$", "AUD": "$", "JPY": "¥"}
# Store.plan → (plan_name, plan_display_name) as the REST Shop resource names them.
PLAN_NAMES = {"basic": ("basic", "Basic"), "standard": ("professional", "Shopify"),
              "advanced": ("unlimited", "Advanced"), "plus": ("shopify_plus", "Shopify Plus"),
              "enterprise": ("enterprise", "Shopify Plus")}


def gid(resource: str, resource_id: int) -> str:
    """A GraphQL global id, e.g. ``gid://shopify/Customer/123``."""
    return f"gid://shopify/{resource}/{resource_id}"


def timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 with an offset, to the second, as REST payloads render times."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def money(amount: Decimal | str | int) -> str:
    """A money amount as Shopify sends it: a string with two decimals."""
    return str(Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP))


def money_set(amount: Decimal | str | int, currency: str) -> dict[str, dict[str, str]]:
    """The ``*_set`` twin of a money field (shop and presentment currency are the same here)."""
    value = {"amount": money(amount), "currency_code": currency}
    return {"shop_money": dict(value), "presentment_money": dict(value)}


def _full_name(first: str | None, last: str | None) -> str | None:
    return " ".join(part for part in (first, last) if part) or None


# --- customers/create ------------------------------------------------------------------------------

def customer_address(customer: Customer) -> dict[str, Any]:
    """The customer's default address (every devstore customer has one, possibly mostly empty)."""
    stored = customer.address or {}
    return {
        "id": stored.get("id", customer.id),
        "customer_id": customer.id,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "company": stored.get("company"),
        "address1": stored.get("address1"),
        "address2": stored.get("address2"),
        "city": stored.get("city"),
        "province": stored.get("province"),
        "country": stored.get("country"),
        "zip": stored.get("zip"),
        "phone": customer.phone,
        "name": _full_name(customer.first_name, customer.last_name),
        "province_code": stored.get("province_code"),
        "country_code": stored.get("country_code"),
        "country_name": stored.get("country_name"),
        "default": True,
    }


def _customer_fields(customer: Customer, currency: str) -> dict[str, Any]:
    """The fields a customer carries both in customers/* payloads and nested in an order."""
    return {
        "id": customer.id,
        "created_at": timestamp(customer.created_at),
        "updated_at": timestamp(customer.updated_at),
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "state": "disabled",  # no account invitation was sent: Shopify's default for a new customer
        "note": customer.note,
        "verified_email": customer.email is not None,
        "multipass_identifier": None,
        "tax_exempt": False,
        "email": customer.email,
        "phone": customer.phone,
        "currency": currency,
    }


def customer_payload(customer: Customer, store: Store) -> dict[str, Any]:
    """``customers/create``: since API 2025-01 without tags, marketing consent or order stats."""
    address = customer_address(customer)
    return {
        **_customer_fields(customer, store.currency),
        "addresses": [address],
        "tax_exemptions": [],
        "admin_graphql_api_id": gid("Customer", customer.id),
        "default_address": address,
    }


def order_customer(customer: Customer, currency: str) -> dict[str, Any]:
    """The ``customer`` object nested in an order payload."""
    return {
        **_customer_fields(customer, currency),
        "tax_exemptions": [],
        "admin_graphql_api_id": gid("Customer", customer.id),
        "default_address": customer_address(customer),
    }


# --- orders/paid -----------------------------------------------------------------------------------

def _order_address(customer: Customer | None) -> dict[str, Any]:
    """Billing and shipping address: the customer's default address, or an empty one for a guest."""
    stored = (customer.address or {}) if customer else {}
    first, last = (customer.first_name, customer.last_name) if customer else (None, None)
    return {
        "first_name": first,
        "address1": stored.get("address1"),
        "phone": customer.phone if customer else None,
        "city": stored.get("city"),
        "zip": stored.get("zip"),
        "province": stored.get("province"),
        "country": stored.get("country_name") or stored.get("country"),
        "last_name": last,
        "address2": stored.get("address2"),
        "company": stored.get("company"),
        "latitude": None,
        "longitude": None,
        "name": _full_name(first, last),
        "country_code": stored.get("country_code"),
        "province_code": stored.get("province_code"),
    }


def _allocations(allocations: Iterable[dict[str, Any]], currency: str) -> list[dict[str, Any]]:
    return [{"amount": money(a["amount"]), "amount_set": money_set(a["amount"], currency),
             "discount_application_index": a["discount_application_index"]} for a in allocations]


def _allocated(item: dict[str, Any]) -> Decimal:
    """The order discounts allocated to a line item."""
    return sum((Decimal(a["amount"]) for a in item.get("discount_allocations", [])), Decimal(0))


def line_item_paid(item: dict[str, Any]) -> Decimal:
    """What the buyer paid for a line item: price × quantity less its discount allocations."""
    return Decimal(item["price"]) * int(item["quantity"]) - _allocated(item)


def _line_item(item: dict[str, Any], currency: str, refunded: int = 0) -> dict[str, Any]:
    """A line item; ``refunded`` units (cancelled ones) are no longer current nor fulfillable."""
    allocated = _allocated(item)
    return {
        "id": item["id"],
        "admin_graphql_api_id": gid("LineItem", item["id"]),
        "attributed_staffs": [],
        "current_quantity": item["quantity"] - refunded,
        "fulfillable_quantity": item["quantity"] - refunded,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": 0,
        "name": item["title"],
        "price": money(item["price"]),
        "price_set": money_set(item["price"], currency),
        "product_exists": False,  # custom items: devstore has no product catalogue
        "product_id": None,
        "properties": [],
        "quantity": item["quantity"],
        "requires_shipping": True,
        "sales_line_item_group_id": None,
        "sku": item.get("sku"),
        "taxable": True,
        "title": item["title"],
        "total_discount": money(allocated),
        "total_discount_set": money_set(allocated, currency),
        "variant_id": None,
        "variant_inventory_management": None,
        "variant_title": None,
        "vendor": None,
        "tax_lines": [],
        "duties": [],
        "discount_allocations": _allocations(item.get("discount_allocations", []), currency),
    }


def _shipping_line(order: Order) -> dict[str, Any]:
    """One flat-rate shipping line; a free-shipping code shows as its discount allocation."""
    allocations = [{"amount": entry["amount"], "discount_application_index": index}
                   for index, (entry, application) in enumerate(zip(order.discount_codes,
                                                                     order.discount_applications, strict=True))
                   if application["target_type"] == "shipping_line"]
    discounted = order.shipping_price - sum((Decimal(a["amount"]) for a in allocations), Decimal(0))
    currency = order.currency
    return {
        # One shipping line per order, its id derived from the order's so that re-rendering keeps it.
        "id": order.id + 1,
        "carrier_identifier": None,
        "code": "Standard",
        "current_discounted_price_set": money_set(discounted, currency),
        "discounted_price": money(discounted),
        "discounted_price_set": money_set(discounted, currency),
        "is_removed": False,
        "phone": None,
        "price": money(order.shipping_price),
        "price_set": money_set(order.shipping_price, currency),
        "requested_fulfillment_service_id": None,
        "source": "shopify",
        "title": "Standard",
        "tax_lines": [],
        "discount_allocations": _allocations(allocations, currency),
    }


def shipping_discount(order: Order) -> Decimal:
    """What free-shipping codes took off the shipping."""
    return sum((Decimal(entry["amount"]) for entry, application
                in zip(order.discount_codes, order.discount_applications, strict=True)
                if application["target_type"] == "shipping_line"), Decimal(0))


def order_totals(order: Order) -> dict[str, Decimal]:
    """Shopify's order totals: ``subtotal_price`` is after order discounts, before shipping."""
    return {
        "total_line_items_price": order.subtotal_price,
        "subtotal_price": order.subtotal_price - (order.total_discounts - shipping_discount(order)),
        "total_discounts": order.total_discounts,
        "total_shipping_price": order.shipping_price,
        "total_price": order.total_price,
    }


def current_totals(order: Order, refunds: Sequence[Refund]) -> dict[str, Any]:
    """The ``current_*`` totals, which Shopify makes reflect refunds: refunded (cancelled) line items and
    shipping leave the order, and the total is what was paid less every refund."""
    totals = order_totals(order)
    quantities: dict[int, int] = {}
    for refund in refunds:
        for line in refund.line_items:
            quantities[line["line_item_id"]] = quantities.get(line["line_item_id"], 0) + int(line["quantity"])
    items = {item["id"]: item for item in order.line_items}
    share = {key: Decimal(count) / int(items[key]["quantity"]) for key, count in quantities.items() if key in items}
    shipping_refunded = any(refund.shipping is not None for refund in refunds)
    removed_subtotal = sum((line_item_paid(items[key]) * part for key, part in share.items()), Decimal(0))
    removed_discounts = sum((_allocated(items[key]) * part for key, part in share.items()), Decimal(0))
    if shipping_refunded:
        removed_discounts += shipping_discount(order)
    return {
        "subtotal_price": totals["subtotal_price"] - removed_subtotal,
        "total_discounts": order.total_discounts - removed_discounts,
        "shipping_price": Decimal(0) if shipping_refunded else order.shipping_price,
        "total_price": order.total_price - order.total_refunded,
        "refunded_quantities": quantities,
    }


def order_payload(order: Order, store: Store, customer: Customer | None,
                  refunds: Sequence[Refund] = ()) -> dict[str, Any]:
    """The Order resource (``orders/paid``, ``orders/cancelled``): paid at once through the Bogus gateway,
    not fulfilled; a cancelled one has ``cancelled_at`` and ``cancel_reason``, and ``refunds`` lists what
    was given back (the same objects ``refunds/create`` sends)."""
    currency = order.currency
    totals = order_totals(order)
    current = current_totals(order, refunds)
    email = order.email or (customer.email if customer else None)
    zero = Decimal(0)
    return {
        "id": order.id,
        "admin_graphql_api_id": gid("Order", order.id),
        "app_id": None,
        "browser_ip": None,
        "buyer_accepts_marketing": False,
        "cancel_reason": order.cancel_reason,
        "cancelled_at": timestamp(order.cancelled_at),
        "cart_token": None,
        "checkout_token": None,
        "client_details": None,
        "closed_at": None,
        "confirmation_number": order.token[:9].upper(),
        "confirmed": True,
        "contact_email": email,
        "created_at": timestamp(order.created_at),
        "currency": currency,
        "current_shipping_price_set": money_set(current["shipping_price"], currency),
        "current_subtotal_price": money(current["subtotal_price"]),
        "current_subtotal_price_set": money_set(current["subtotal_price"], currency),
        "current_total_additional_fees_set": None,
        "current_total_discounts": money(current["total_discounts"]),
        "current_total_discounts_set": money_set(current["total_discounts"], currency),
        "current_total_duties_set": None,
        "current_total_price": money(current["total_price"]),
        "current_total_price_set": money_set(current["total_price"], currency),
        "current_total_tax": money(zero),
        "current_total_tax_set": money_set(zero, currency),
        "customer_locale": "en",
        "device_id": None,
        "discount_codes": [dict(entry) for entry in order.discount_codes],
        "duties_included": False,
        "email": email,
        "estimated_taxes": False,
        "financial_status": order.financial_status,
        "fulfillment_status": None,
        "landing_site": None,
        "landing_site_ref": None,
        "location_id": None,
        "merchant_business_entity_id": base64.b64encode(str(store.numeric_id).encode()).decode().rstrip("="),
        "merchant_of_record_app_id": None,
        "name": f"#{order.number}",
        "note": None,
        "note_attributes": [],
        "number": order.number - 1000,
        "order_number": order.number,
        "order_status_url": f"https://{store.domain}/{store.numeric_id}/orders/{order.token}/authenticate"
                            f"?key={order.token[::-1]}",
        "original_total_additional_fees_set": None,
        "original_total_duties_set": None,
        "payment_gateway_names": ["bogus"],
        "phone": customer.phone if customer else None,
        "po_number": None,
        "presentment_currency": currency,
        "processed_at": timestamp(order.processed_at),
        "reference": None,
        "referring_site": None,
        "source_identifier": None,
        "source_name": "web",
        "source_url": None,
        "subtotal_price": money(totals["subtotal_price"]),
        "subtotal_price_set": money_set(totals["subtotal_price"], currency),
        "tags": "",
        "tax_exempt": False,
        "tax_lines": [],
        "taxes_included": False,
        "test": True,  # Bogus-gateway orders are test orders on Shopify too
        "token": order.token,
        "total_cash_rounding_payment_adjustment_set": money_set(zero, currency),
        "total_cash_rounding_refund_adjustment_set": money_set(zero, currency),
        "total_discounts": money(order.total_discounts),
        "total_discounts_set": money_set(order.total_discounts, currency),
        "total_line_items_price": money(order.subtotal_price),
        "total_line_items_price_set": money_set(order.subtotal_price, currency),
        "total_outstanding": money(zero),  # paid in full
        "total_price": money(order.total_price),
        "total_price_set": money_set(order.total_price, currency),
        "total_shipping_price_set": money_set(order.shipping_price, currency),
        "total_tax": money(zero),
        "total_tax_set": money_set(zero, currency),
        "total_tip_received": money(zero),
        "total_weight": 0,
        "updated_at": timestamp(order.updated_at),
        "user_id": None,
        "billing_address": _order_address(customer),
        "customer": order_customer(customer, currency) if customer else None,
        "discount_applications": [dict(application) for application in order.discount_applications],
        "fulfillments": [],
        "line_items": [_line_item(item, currency, current["refunded_quantities"].get(item["id"], 0))
                       for item in order.line_items],
        "payment_terms": None,
        "refunds": [refund_payload(refund, order, store) for refund in refunds],
        "shipping_address": _order_address(customer),
        "shipping_lines": [_shipping_line(order)],
        "returns": [],
        "line_item_groups": [],
    }


# --- refunds/create --------------------------------------------------------------------------------

def _refund_line_item(line: dict[str, Any], item: dict[str, Any], currency: str, location_id: int) -> dict[str, Any]:
    """A refunded line item. Shopify sends ``subtotal`` and ``total_tax`` as JSON numbers here, unlike
    every other money field; the ``*_set`` twins are strings as usual."""
    subtotal = Decimal(line["subtotal"])
    zero = Decimal(0)
    return {
        "id": line["id"],
        "quantity": line["quantity"],
        "line_item_id": line["line_item_id"],
        # Restocked units go back to a location: the store's primary one (the Shop's primary_location_id).
        "location_id": None if line["restock_type"] == "no_restock" else location_id,
        "restock_type": line["restock_type"],
        "subtotal": float(subtotal),
        "total_tax": 0.0,
        "subtotal_set": money_set(subtotal, currency),
        "total_tax_set": money_set(zero, currency),
        "line_item": _line_item(item, currency),
    }


def _refund_transaction(refund: Refund, order: Order) -> dict[str, Any]:
    """The refund's transaction: money back through the Bogus gateway, against the order's sale."""
    currency = order.currency
    unsettled = {"amount": "0.0", "currency": currency}
    return {
        "id": refund.transaction_id,
        "order_id": order.id,
        "kind": "refund",
        "gateway": "bogus",
        "status": "success",
        "message": "Bogus Gateway: Forced success",
        "created_at": timestamp(refund.created_at),
        "test": True,
        "authorization": None,
        "location_id": None,
        "user_id": None,
        # The sale it refunds: devstore keeps no transactions, so the id is derived from the order's, like
        # the shipping line's.
        "parent_id": order.id + 2,
        "processed_at": timestamp(refund.created_at),
        "device_id": None,
        "error_code": None,
        "source_name": "web",
        "receipt": {},
        "amount": money(refund.amount),
        "currency": currency,
        "payment_id": f"c{order.id}.1",
        "total_unsettled_set": {"presentment_money": dict(unsettled), "shop_money": dict(unsettled)},
        "manual_payment_gateway": False,
        "amount_rounding": None,
        "admin_graphql_api_id": gid("OrderTransaction", refund.transaction_id),
    }


def refund_payload(refund: Refund, order: Order, store: Store) -> dict[str, Any]:
    """``refunds/create`` (the Refund resource, also each entry of an order's ``refunds``).

    What the refund covers (line items, shipping) and what it paid back (its transaction) differ for a
    refund of an amount: the difference is a ``refund_discrepancy`` order adjustment, negative when more
    was paid back than the lines cover. Refunded shipping is in ``refund_shipping_lines`` (API 2024-10 on).
    """
    currency = order.currency
    zero = Decimal(0)
    items = {item["id"]: item for item in order.line_items}
    covered = sum((Decimal(line["subtotal"]) for line in refund.line_items), zero) + (refund.shipping or zero)
    discrepancy = covered - refund.amount
    adjustments = [] if discrepancy == 0 else [{
        "id": refund.id + 2,
        "order_id": order.id,
        "refund_id": refund.id,
        "amount": money(discrepancy),
        "tax_amount": money(zero),
        "kind": "refund_discrepancy",
        "reason": "Refund discrepancy",
        "amount_set": money_set(discrepancy, currency),
        "tax_amount_set": money_set(zero, currency),
    }]
    shipping_lines = [] if refund.shipping is None else [{
        "id": refund.id + 1,
        "shipping_line_id": _shipping_line(order)["id"],
        "subtotal_amount_set": money_set(refund.shipping, currency),
        "shipping_line": _shipping_line(order),
    }]
    location_id = store.numeric_id + 1  # the Shop payload's primary_location_id
    return {
        "id": refund.id,
        "order_id": order.id,
        "created_at": timestamp(refund.created_at),
        "note": refund.note,
        "user_id": None,  # devstore has no staff accounts
        "processed_at": timestamp(refund.created_at),
        "duties": [],
        "total_duties_set": money_set(zero, currency),
        "return": None,
        "restock": refund.restock,
        "refund_shipping_lines": shipping_lines,
        "admin_graphql_api_id": gid("Refund", refund.id),
        "order_adjustments": adjustments,
        "refund_line_items": [_refund_line_item(line, items[line["line_item_id"]], currency, location_id)
                              for line in refund.line_items],
        "transactions": [_refund_transaction(refund, order)],
    }


# --- app/uninstalled -------------------------------------------------------------------------------

def shop_payload(store: Store, has_discounts: bool) -> dict[str, Any]:
    """``app/uninstalled``: the Shop resource."""
    symbol = CURRENCY_SYMBOLS.get(store.currency, store.currency + " ")
    plan_name, plan_display_name = PLAN_NAMES.get(store.plan, (store.plan, store.plan.title()))
    address = STORE_ADDRESS
    return {
        "id": store.numeric_id,
        "name": store.name,
        "email": store.email,
        "domain": store.domain,
        "province": address["province"],
        "country": address["country"],
        "address1": address["address1"],
        "zip": address["zip"],
        "city": address["city"],
        "source": None,
        "phone": "",
        "latitude": None,
        "longitude": None,
        "primary_locale": "en",
        "address2": address["address2"],
        "created_at": None,
        "updated_at": None,
        "country_code": address["country_code"],
        "country_name": address["country_name"],
        "currency": store.currency,
        "customer_email": store.email,
        "timezone": address["timezone"],
        "iana_timezone": address["iana_timezone"],
        "shop_owner": f"{store.name} Owner",
        "money_format": f"{symbol}{{{{amount}}}}",
        "money_with_currency_format": f"{symbol}{{{{amount}}}} {store.currency}",
        "weight_unit": "kg",
        "province_code": address["province_code"],
        "taxes_included": True,
        "auto_configure_tax_inclusivity": None,
        "tax_shipping": None,
        "county_taxes": True,
        "plan_display_name": plan_display_name,
        "plan_name": plan_name,
        "has_discounts": has_discounts,
        "has_gift_cards": False,
        "myshopify_domain": store.domain,
        "google_apps_domain": None,
        "google_apps_login_enabled": None,
        "money_in_emails_format": f"{symbol}{{{{amount}}}}",
        "money_with_currency_in_emails_format": f"{symbol}{{{{amount}}}} {store.currency}",
        "eligible_for_payments": True,
        "requires_extra_payments_agreement": False,
        "password_enabled": True,  # development stores are password protected
        "has_storefront": True,
        "finances": True,
        "primary_location_id": store.numeric_id + 1,
        "checkout_api_supported": True,
        "multi_location_enabled": True,
        "setup_required": False,
        "pre_launch_enabled": False,
        "enabled_presentment_currencies": [store.currency],
        "marketing_sms_consent_enabled_at_checkout": False,
        "transactional_sms_disabled": False,
    }
