"""The JSON control API under ``/_devstore/``: what the pages do, for scripts and tests.

Every answer is JSON; errors are ``{"error": "..."}`` with 400 (malformed), 404 (no such store or
customer) or 409 (the store refuses: a code, an uninstall of an app that is not installed, a taken
email). Refused codes add ``rule`` and ``code``. ``devstore/README.md`` documents each endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from devstore import checkout, oauth, refunds, summaries
from devstore.admin.routes import admin_runtime
from devstore.errors import CodeRefused, DevstoreError, InvalidInput
from devstore.models import Store
from devstore.web import current_deliverer, current_state
from devstore.webhooks import rest_topic

bp = Blueprint("control", __name__, url_prefix="/_devstore")

# Shopify's GraphQL restore rates per plan; bucket sizes are not published for every plan, so they
# are taken as 20 seconds of restore, which gives the standard plan's 2,000 points.
PLANS = {"basic": (2000.0, 100.0), "standard": (2000.0, 100.0), "advanced": (4000.0, 200.0),
         "plus": (20000.0, 1000.0), "enterprise": (40000.0, 2000.0)}
DELIVERY_FAULTS = ("duplicate", "delay", "drop")
# The Admin GraphQL faults: each a count of the next calls it applies to (see devstore/admin/routes.py).
GRAPHQL_FAULTS = ("graphql_5xx", "graphql_timeout", "graphql_throttle", "graphql_answer_lost")


@bp.errorhandler(DevstoreError)
def _devstore_error(exc: DevstoreError):  # type: ignore[no-untyped-def]
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, CodeRefused):
        body.update(rule=exc.rule, code=exc.code)
    return jsonify(body), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
    return jsonify(error=exc.description or exc.name), exc.code or 500


def json_body() -> dict[str, Any]:
    """The JSON object sent (an empty body counts as ``{}``)."""
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object (Content-Type: application/json)")
    return body


@bp.post("/reset")
def reset():  # type: ignore[no-untyped-def]
    """Forget everything: every store back to empty, the app uninstalled, the webhook log and usage cleared."""
    current_state().reset()
    admin_runtime().buckets.reset()  # full buckets and zero usage too: a reset store starts like a new one
    admin_runtime().usage.reset()
    return jsonify(ok=True)


@bp.get("/stores")
def list_stores():  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        return jsonify([summaries.store(session, s) for s in session.scalars(select(Store).order_by(Store.domain))])


@bp.get("/stores/<shop>")
def show_store(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        return jsonify(summaries.store(session, checkout.get_store(session, shop)))


@bp.get("/stores/<shop>/customers")
def list_customers(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        checkout.get_store(session, shop)
        return jsonify(summaries.customers(session, shop))


@bp.post("/stores/<shop>/customers")
def create_customer(shop: str):  # type: ignore[no-untyped-def]
    """Create a customer; fires ``customers/create``."""
    body = json_body()
    address = body.get("address")
    if address is not None and not isinstance(address, dict):
        raise InvalidInput("address must be an object")
    with current_state().session() as session:
        customer = checkout.create_customer(
            session, shop, email=body.get("email"), first_name=body.get("first_name"),
            last_name=body.get("last_name"), phone=body.get("phone"), note=body.get("note"), address=address)
        session.flush()
        [created] = [c for c in summaries.customers(session, shop) if c["id"] == customer.id]
    return jsonify(created), 201


@bp.get("/stores/<shop>/orders")
def list_orders(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        checkout.get_store(session, shop)
        return jsonify(summaries.orders(session, shop))


@bp.post("/stores/<shop>/orders")
def place_order(shop: str):  # type: ignore[no-untyped-def]
    """Place and pay an order, applying ``codes``; fires ``orders/paid``."""
    body = json_body()
    codes = body.get("codes") or []
    if isinstance(codes, str):
        codes = [codes]
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise InvalidInput("codes must be a list of strings")
    with current_state().session() as session:
        order = checkout.place_order(
            session, shop, line_items=_line_items(body), codes=codes, customer_id=body.get("customer_id"),
            email=body.get("email"), shipping_price=body.get("shipping_price", checkout.DEFAULT_SHIPPING))
        return jsonify(summaries.order(order)), 201


@bp.post("/stores/<shop>/orders/<order_id>/cancel")
def cancel_order(shop: str, order_id: str):  # type: ignore[no-untyped-def]
    """Cancel an order, refunding what is left unless ``"refund": false``; fires ``refunds/create`` (if
    anything was refunded) and ``orders/cancelled``. 409 if it is already cancelled."""
    body = json_body()
    refund, restock = _flag(body, "refund"), _flag(body, "restock")
    with current_state().session() as session:
        order = refunds.cancel_order(session, shop, order_id, reason=body.get("reason"), refund=refund,
                                     restock=restock)
        return jsonify(summaries.order(order, refunds.refunds_of(session, order)))


@bp.post("/stores/<shop>/orders/<order_id>/refunds")
def refund_order(shop: str, order_id: str):  # type: ignore[no-untyped-def]
    """Refund an amount of an order (at most what is left to refund); fires ``refunds/create``."""
    body = json_body()
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise InvalidInput("note must be a string")
    with current_state().session() as session:
        refund = refunds.refund_order(session, shop, order_id, amount=body.get("amount"), note=note)
        order = refunds.get_order(session, shop, order_id)
        return jsonify({**summaries.refund(refund),
                        "order": summaries.order(order, refunds.refunds_of(session, order))}), 201


def _flag(body: Mapping[str, Any], name: str) -> bool:
    """An optional true/false field, true when absent."""
    value = body.get(name, True)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def _line_items(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``line_items``, or a single ``amount`` as one item."""
    if "line_items" in body:
        items = body["line_items"]
        if not isinstance(items, list):
            raise InvalidInput("line_items must be a list of {title, price, quantity}")
        return items
    if "amount" in body:
        return [{"title": body.get("title") or "Item", "price": body["amount"], "quantity": 1}]
    raise InvalidInput("give line_items [{title, price, quantity}] or an amount")


@bp.get("/stores/<shop>/discounts")
def list_discounts(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        checkout.get_store(session, shop)
        return jsonify(summaries.discounts(session, shop))


@bp.get("/stores/<shop>/deliveries")
def list_deliveries(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        checkout.get_store(session, shop)
        return jsonify(summaries.deliveries(session, shop))


@bp.get("/stores/<shop>/webhook_subscriptions")
def list_subscriptions(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as session:
        checkout.get_store(session, shop)
        return jsonify(summaries.subscriptions(session, shop))


@bp.put("/stores/<shop>/faults")
def set_faults(shop: str):  # type: ignore[no-untyped-def]
    """Replace the store's faults (``{}`` clears them)."""
    faults = validate_faults(json_body())
    with current_state().session() as session:
        store = checkout.get_store(session, shop)
        store.faults = faults
        return jsonify(faults)


def validate_faults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check every fault: the delivery ones, the Admin API's counters and their ``timeout_seconds``."""
    faults: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "duplicate":
            if not isinstance(value, bool):
                raise InvalidInput("duplicate must be true or false")
        elif key == "delay":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidInput("delay must be a number of seconds >= 0")
        elif key == "drop":
            if isinstance(value, list) and all(isinstance(t, str) for t in value):
                value = [rest_topic(t) for t in value]
            elif not isinstance(value, bool):
                raise InvalidInput("drop must be true, false or a list of topics such as [\"orders/paid\"]")
        elif key in GRAPHQL_FAULTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{key} must be a whole number of calls >= 0")
        elif key == "timeout_seconds":
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidInput("timeout_seconds must be a number of seconds >= 0")
        else:
            known = ", ".join((*DELIVERY_FAULTS, *GRAPHQL_FAULTS, "timeout_seconds"))
            raise InvalidInput(f"unknown fault {key!r}: use {known}")
        faults[key] = value
    return faults


@bp.get("/stores/<shop>/graphql_usage")
def graphql_usage(shop: str):  # type: ignore[no-untyped-def]
    """The store's Admin GraphQL usage since the last reset: ``{"requests", "points", "throttled"}``."""
    with current_state().session() as session:
        checkout.get_store(session, shop)
    return jsonify(admin_runtime().usage.counts(shop))


@bp.delete("/stores/<shop>/graphql_usage")
def reset_graphql_usage(shop: str):  # type: ignore[no-untyped-def]
    """Zero the store's Admin GraphQL usage (a benchmark run starts here)."""
    with current_state().session() as session:
        checkout.get_store(session, shop)
    usage = admin_runtime().usage
    usage.reset(shop)
    return jsonify(usage.counts(shop))


@bp.put("/stores/<shop>/plan")
def set_plan(shop: str):  # type: ignore[no-untyped-def]
    """Set the plan (and its GraphQL bucket), or the bucket figures directly."""
    body = json_body()
    plan = body.get("plan")
    if plan is not None and plan not in PLANS:
        raise InvalidInput(f"plan must be one of {', '.join(PLANS)}")
    bucket_size, restore_rate = PLANS[plan] if plan else (None, None)
    bucket_size = _positive(body, "bucket_size", bucket_size)
    restore_rate = _positive(body, "restore_rate", restore_rate)
    with current_state().session() as session:
        store = checkout.get_store(session, shop)
        store.plan = plan or store.plan
        store.bucket_size = bucket_size or store.bucket_size
        store.restore_rate = restore_rate or store.restore_rate
        return jsonify(summaries.store(session, store))


def _positive(body: Mapping[str, Any], name: str, default: float | None) -> float | None:
    if name not in body:
        return default
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidInput(f"{name} must be a positive number")
    return float(value)


@bp.post("/stores/<shop>/uninstall")
def uninstall(shop: str):  # type: ignore[no-untyped-def]
    """Uninstall the app: tokens revoked, ``app/uninstalled`` fired, subscriptions removed."""
    with current_state().session() as session:
        oauth.uninstall(session, shop)
        return jsonify(summaries.store(session, checkout.get_store(session, shop)))


@bp.post("/stores/<shop>/deliver")
def deliver(shop: str):  # type: ignore[no-untyped-def]
    """Attempt the store's due deliveries now (``{"force": true}``: every pending one, ignoring back-off)."""
    force = bool(json_body().get("force", False))
    with current_state().session() as session:
        checkout.get_store(session, shop)
    attempted = current_deliverer().deliver_due(shop=shop, force=force)
    return jsonify(attempted=attempted)
