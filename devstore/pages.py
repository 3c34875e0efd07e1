"""Pages for a person: the stores, one store's overview, and forms to act as its buyers.

Every form posts and redirects back (POST-redirect-GET); the outcome, or the reason a code was
refused, is shown once as a flashed message. A refused order's form comes back filled in. A
shareable discount link (``/stores/<shop>/discount/<code>``) keeps its code in a cookie, as
Shopify's storefront does, and the order form starts with it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from devstore import checkout, oauth, payloads, refunds, summaries
from devstore.errors import DevstoreError, InvalidInput, NotFound
from devstore.models import Store
from devstore.web import current_deliverer, current_state

bp = Blueprint("pages", __name__)

DEFAULT_ITEMS = "T-shirt, 25.00, 2"
DISCOUNT_COOKIE = "discount_code"  # Shopify's storefront keeps a discount link's code in the cart session


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound):  # type: ignore[no-untyped-def]
    return render_template("error.html", message=str(exc), status=404), 404


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    with current_state().session() as db:
        stores = [summaries.store(db, s) for s in db.scalars(select(Store).order_by(Store.domain))]
    return render_template("index.html", stores=stores)


@bp.get("/stores/<shop>")
def store(shop: str):  # type: ignore[no-untyped-def]
    with current_state().session() as db:
        overview = summaries.store(db, checkout.get_store(db, shop))
        customers = summaries.customers(db, shop)
        discounts = summaries.discounts(db, shop)
        orders = summaries.orders(db, shop)
        deliveries = summaries.deliveries(db, shop)
        subscriptions = summaries.subscriptions(db, shop)
    order_form = session.pop("order_form", None) or {"items": DEFAULT_ITEMS, "shipping_price": "10.00"}
    if not order_form.get("codes") and request.cookies.get(DISCOUNT_COOKIE):
        order_form["codes"] = request.cookies[DISCOUNT_COOKIE]
    return render_template("store.html", store=overview, customers=customers, discounts=discounts, orders=orders,
                           deliveries=deliveries, subscriptions=subscriptions, order_form=order_form,
                           cancel_reasons=refunds.CANCEL_REASONS)


@bp.get("/stores/<shop>/discount/<code>")
def discount_link(shop: str, code: str):  # type: ignore[no-untyped-def]
    """Shopify's shareable link ``/discount/<code>?redirect=/path``: keep the code for checkout, then go on.

    The cookie is set whether or not the code exists (Shopify checks it at checkout); devstore has no
    other storefront pages, so it always lands on the store page and only names a safe redirect path.
    """
    with current_state().session() as db:
        checkout.get_store(db, shop)
        known = checkout.find_code(db, shop, code) is not None
    if known:
        target = safe_path(request.args.get("redirect"))
        opened = f" (Shopify would now open {target})" if target else ""
        flash(f"Discount code {code} will be applied at checkout{opened}.", "success")
    else:
        flash(f"Discount code {code} is not valid on this store.", "critical")
    response = redirect(url_for("pages.store", shop=shop), 302)
    response.set_cookie(DISCOUNT_COOKIE, code, path=url_for("pages.store", shop=shop), httponly=True,
                        samesite="Lax")
    return response


def safe_path(target: str | None) -> str | None:
    """``target`` if it is a path on this store (``/collections/sale``), else None: never an open redirect.

    ``//host`` and ``/\\host`` are other hosts to a browser, which also drops tabs and newlines from URLs.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


def _back(shop: str):  # type: ignore[no-untyped-def]
    return redirect(url_for("pages.store", shop=shop), 303)


def _require_store(shop: str) -> None:
    """A form posted to a store that does not exist is a 404 page, not a flashed message."""
    with current_state().session() as db:
        checkout.get_store(db, shop)


@bp.post("/stores/<shop>/customers")
def create_customer(shop: str):  # type: ignore[no-untyped-def]
    _require_store(shop)
    form = request.form
    try:
        with current_state().session() as db:
            customer = checkout.create_customer(
                db, shop, email=form.get("email"), first_name=form.get("first_name"),
                last_name=form.get("last_name"), phone=form.get("phone"), note=form.get("note"))
            label = customer.email or f"customer {customer.id}"
    except DevstoreError as exc:
        flash(f"Customer not created: {exc}", "critical")
    else:
        flash(f"Created {label}; customers/create fired.", "success")
    return _back(shop)


def parse_items(text: str) -> list[dict[str, Any]]:
    """One item per line: ``price``, ``title, price`` or ``title, price, quantity``."""
    items = []
    for number, line in enumerate((raw.strip() for raw in text.splitlines()), start=1):
        if not line:
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 1:
            items.append({"title": f"Item {number}", "price": parts[0], "quantity": 1})
        elif len(parts) in (2, 3):
            items.append({"title": parts[0], "price": parts[1], "quantity": parts[2] if len(parts) == 3 else 1})
        else:
            raise InvalidInput(f"line {number}: write 'title, price' or 'title, price, quantity'")
    return items


@bp.post("/stores/<shop>/orders")
def place_order(shop: str):  # type: ignore[no-untyped-def]
    _require_store(shop)
    form = request.form
    codes = [code for code in form.get("codes", "").replace(",", " ").split() if code]
    try:
        with current_state().session() as db:
            order = checkout.place_order(
                db, shop, line_items=parse_items(form.get("items", "")), codes=codes,
                customer_id=form.get("customer_id") or None, email=form.get("email"),
                shipping_price=form.get("shipping_price") or "0")
            summary = summaries.order(order)
    except DevstoreError as exc:
        session["order_form"] = form.to_dict()
        flash(f"Order refused: {exc}", "critical")
    else:
        flash(f"Order {summary['name']} paid: {summary['total_price']} {summary['currency']} "
              f"(discounts {summary['total_discounts']}); orders/paid fired.", "success")
    return _back(shop)


@bp.post("/stores/<shop>/orders/<order_id>/cancel")
def cancel_order(shop: str, order_id: str):  # type: ignore[no-untyped-def]
    """The order's Cancel button: refund what is left (unless "refund later"), fire the webhooks."""
    _require_store(shop)
    form = request.form
    try:
        with current_state().session() as db:
            before = refunds.get_order(db, shop, order_id).total_refunded
            order = refunds.cancel_order(db, shop, order_id, reason=form.get("reason"),
                                         refund=form.get("refund", "now") != "later")
            refunded_now, summary = order.total_refunded - before, summaries.order(order)
    except DevstoreError as exc:
        flash(f"Order not cancelled: {exc}", "critical")
    else:
        refunded = (f"refunded {payloads.money(refunded_now)} {summary['currency']}, refunds/create and "
                    if refunded_now else "")
        flash(f"Order {summary['name']} cancelled ({summary['cancel_reason']}): {refunded}orders/cancelled fired.",
              "success")
    return _back(shop)


@bp.post("/stores/<shop>/orders/<order_id>/refund")
def refund_order(shop: str, order_id: str):  # type: ignore[no-untyped-def]
    """The order's Refund button: give an amount back, fire ``refunds/create``."""
    _require_store(shop)
    form = request.form
    try:
        with current_state().session() as db:
            refund = refunds.refund_order(db, shop, order_id, amount=form.get("amount"), note=form.get("note"))
            order = summaries.order(refunds.get_order(db, shop, order_id))
    except DevstoreError as exc:
        flash(f"Refund refused: {exc}", "critical")
    else:
        flash(f"Refunded {payloads.money(refund.amount)} {order['currency']} on order {order['name']} "
              f"(now {order['financial_status']}); refunds/create fired.", "success")
    return _back(shop)


@bp.post("/stores/<shop>/uninstall")
def uninstall(shop: str):  # type: ignore[no-untyped-def]
    _require_store(shop)
    try:
        with current_state().session() as db:
            oauth.uninstall(db, shop)
    except DevstoreError as exc:
        flash(str(exc), "critical")
    else:
        flash("App uninstalled: tokens revoked, app/uninstalled fired.", "success")
    return _back(shop)


@bp.post("/stores/<shop>/deliver")
def deliver(shop: str):  # type: ignore[no-untyped-def]
    _require_store(shop)
    attempted = current_deliverer().deliver_due(shop=shop, force=True)
    flash(f"Attempted {attempted} pending deliveries.", "success")
    return _back(shop)
