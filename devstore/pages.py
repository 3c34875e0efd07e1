"""Pages for a person: the stores, one store's overview, and forms to act as its buyers.

Every form posts and redirects back (POST-redirect-GET); the outcome, or the reason a code was
refused, is shown once as a flashed message. A refused order's form comes back filled in.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from devstore import checkout, oauth, summaries
from devstore.errors import DevstoreError, InvalidInput, NotFound
from devstore.models import Store
from devstore.web import current_deliverer, current_state

bp = Blueprint("pages", __name__)

DEFAULT_ITEMS = "T-shirt, 25.00, 2"


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
    return render_template("store.html", store=overview, customers=customers, discounts=discounts, orders=orders,
                           deliveries=deliveries, subscriptions=subscriptions, order_form=order_form)


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
