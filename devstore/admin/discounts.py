"""Code discount mutations: create (basic, free shipping), activate, deactivate, delete, bulk delete.

Input is checked the way Shopify checks it and refused with ``DiscountUserError``s (``field``,
``code``, ``message``) before anything is written. What Shopify accepts but devstore cannot honour
at checkout (product or collection targets, segments, markets, quantity minimums, subscriptions,
country lists, shipping price caps) is refused with an ``INVALID`` user error that says so, rather
than stored and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from graphql import GraphQLError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from devstore.admin import jobs
from devstore.admin.context import Context, gid, parse_gid
from devstore.admin.discount_views import DiscountCodeNodeView
from devstore.admin.objects import Plain
from devstore.admin.views import Info
from devstore.models import Customer, Discount, DiscountCode, Job, Metafield
from devstore.state import State

MAX_LENGTH = 255
MAX_MINIMUM_SUBTOTAL = Decimal("1000000000000000000")
CONTEXT_KINDS = ("all", "customers", "customerSegments", "markets")


class Refusals(list[Plain]):
    """The user errors of one mutation, in the order Shopify reports them."""

    def add(self, path: list[str], message: str, code: str | None) -> None:
        self.append(Plain("DiscountUserError", field=path, message=message, code=code, extraInfo=None))

    def unsupported(self, path: list[str], what: str) -> None:
        self.add(path, f"devstore does not support {what}", "INVALID")


@dataclass
class DiscountSpec:
    """A valid discount input, normalised to devstore's row."""

    kind: str
    title: str = ""
    code: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    usage_limit: int | None = None
    once_per_customer: bool = False
    customer_ids: list[int] | None = None
    combines_with: dict[str, bool] = field(default_factory=dict)
    minimum_subtotal: Decimal | None = None
    value_type: str = "free_shipping"
    value: Decimal = Decimal(0)
    applies_on_each_item: bool = False
    tags: list[str] = field(default_factory=list)


# --- reading the input ------------------------------------------------------------------------------

def _read_text(data: dict[str, Any], name: str, label: str, path: list[str], errors: Refusals) -> str:
    value = data.get(name)
    if value is None or not value.strip():
        if value == "" and name == "code":
            errors.add(path + [name], "Code is too short (minimum is 1 character)", "TOO_SHORT")
        else:
            errors.add(path + [name], f"{label} can't be blank", "BLANK")
        return ""
    if len(value) > MAX_LENGTH:
        errors.add(path + [name], f"{label} is too long (maximum is {MAX_LENGTH} characters)", "TOO_LONG")
    if name == "code" and ("\n" in value or "\r" in value):
        errors.add(path + [name], "Code cannot contain newline characters.", "INVALID")
    return value.strip() if name == "code" else value


def _read_dates(data: dict[str, Any], path: list[str], spec: DiscountSpec, errors: Refusals) -> None:
    spec.starts_at, spec.ends_at = data.get("startsAt"), data.get("endsAt")
    if spec.starts_at is None:
        errors.add(path + ["startsAt"], "Starts at can't be blank", "BLANK")
    elif spec.ends_at is not None and spec.ends_at <= spec.starts_at:
        errors.add(path + ["endsAt"], "Ends at needs to be after starts_at", "INVALID")


def _read_customers(ctx: Context, customers: dict[str, Any], path: list[str], errors: Refusals) -> list[int]:
    """The ids in ``context.customers.add``; each must be a customer of this store."""
    path = path + ["context", "customers", "add"]
    wanted = customers.get("add") or []
    if not wanted:
        errors.add(path, "Customers can't be blank", "BLANK")
    ids: list[int] = []
    for value in wanted:
        try:
            resource, number = parse_gid(value)
        except GraphQLError:
            resource, number = "", 0
        row = ctx.session.get(Customer, number) if resource == "Customer" else None
        if row is None or row.shop != ctx.shop:
            errors.add(path, f"Customer with id: {value} is invalid", "INVALID")
        elif number not in ids:
            ids.append(number)
    return ids


def _read_context(ctx: Context, data: dict[str, Any], path: list[str], errors: Refusals) -> list[int] | None:
    """Who may use the discount: None for every buyer, else the customer ids."""
    context = data.get("context")
    if context is None:
        return None
    given = [kind for kind in CONTEXT_KINDS if context.get(kind) is not None]
    if len(given) > 1:
        errors.add(path + ["context"], "Only one of all, customers, customerSegments or markets can be provided",
                   "TOO_MANY_ARGUMENTS")
        return None
    if given in (["customerSegments"], ["markets"]):
        errors.unsupported(path + ["context", given[0]], f"{given[0]} (it has none): use all or customers")
        return None
    if given == ["customers"]:
        return _read_customers(ctx, context["customers"], path, errors)
    return None


def _read_minimum(data: dict[str, Any], path: list[str], errors: Refusals) -> Decimal | None:
    minimum = data.get("minimumRequirement")
    if minimum is None:
        return None
    path = path + ["minimumRequirement"]
    if minimum.get("subtotal") is not None and minimum.get("quantity") is not None:
        errors.add(path, "Minimum subtotal and minimum quantity cannot both be set",
                   "MINIMUM_SUBTOTAL_AND_QUANTITY_RANGE_BOTH_PRESENT")
        return None
    if minimum.get("quantity") is not None:
        errors.unsupported(path + ["quantity"], "minimum quantities: use a minimum subtotal")
        return None
    amount = (minimum.get("subtotal") or {}).get("greaterThanOrEqualToSubtotal")
    path = path + ["subtotal", "greaterThanOrEqualToSubtotal"]
    if amount is None:
        return None
    if amount < 0:
        errors.add(path, "Minimum subtotal must be greater than or equal to 0", "GREATER_THAN_OR_EQUAL_TO")
    elif amount >= MAX_MINIMUM_SUBTOTAL:
        errors.add(path, f"Minimum subtotal must be less than {MAX_MINIMUM_SUBTOTAL}", "LESS_THAN")
    return Decimal(amount)


def _read_combinations(data: dict[str, Any], path: list[str], errors: Refusals) -> dict[str, bool]:
    given = data.get("combinesWith") or {}
    if given.get("productDiscountsWithTagsOnSameCartLine") is not None:
        errors.unsupported(path + ["combinesWith", "productDiscountsWithTagsOnSameCartLine"], "cart line tags")
    return {name: bool(given.get(name)) for name in ("orderDiscounts", "productDiscounts", "shippingDiscounts")}


def read_common(ctx: Context, kind: str, data: dict[str, Any], path: list[str], errors: Refusals) -> DiscountSpec:
    """The fields both kinds of code discount share."""
    spec = DiscountSpec(kind=kind)
    spec.title = _read_text(data, "title", "Title", path, errors)
    spec.code = _read_text(data, "code", "Code", path, errors)
    _read_dates(data, path, spec, errors)
    spec.usage_limit = data.get("usageLimit")
    if spec.usage_limit is not None and spec.usage_limit < 1:
        errors.add(path + ["usageLimit"], "Usage limit must be greater than 0", "GREATER_THAN")
    spec.once_per_customer = bool(data.get("appliesOncePerCustomer"))
    spec.customer_ids = _read_context(ctx, data, path, errors)
    spec.minimum_subtotal = _read_minimum(data, path, errors)
    spec.combines_with = _read_combinations(data, path, errors)
    spec.tags = list(dict.fromkeys(data.get("tags") or []))
    if data.get("recurringCycleLimit") is not None:
        errors.unsupported(path + ["recurringCycleLimit"], "subscriptions")
    return spec


def _read_value(value: dict[str, Any] | None, path: list[str], spec: DiscountSpec, errors: Refusals) -> None:
    path = path + ["customerGets", "value"]
    given = [kind for kind in ("percentage", "discountAmount", "discountOnQuantity")
             if (value or {}).get(kind) is not None]
    if not given:
        errors.add(path, "Value can't be blank", "BLANK")
    elif len(given) > 1:
        errors.add(path, "Only one of percentage, discountAmount or discountOnQuantity can be provided",
                   "TOO_MANY_ARGUMENTS")
    elif given == ["discountOnQuantity"]:
        errors.add(path + ["discountOnQuantity"], "Discount on quantity is only valid for buy X get Y discounts",
                   "INVALID")
    elif given == ["percentage"]:
        percentage = value["percentage"]  # type: ignore[index]
        if not 0.0 <= percentage <= 1.0:
            errors.add(path + ["percentage"], "Value must be between 0.0 and 1.0", "VALUE_OUTSIDE_RANGE")
        spec.value_type, spec.value = "percentage", Decimal(str(percentage))
    else:
        amount_input = value["discountAmount"]  # type: ignore[index]
        amount = amount_input.get("amount")
        if amount is None:
            errors.add(path + ["discountAmount", "amount"], "Amount can't be blank", "BLANK")
        elif amount <= 0:
            errors.add(path + ["discountAmount", "amount"], "Value must be greater than 0", "GREATER_THAN")
        spec.value_type, spec.value = "fixed_amount", Decimal(amount or 0)
        spec.applies_on_each_item = bool(amount_input.get("appliesOnEachItem"))


def _read_purchase_types(data: dict[str, Any], path: list[str], errors: Refusals) -> None:
    """devstore sells no subscriptions: a discount applies to one-time purchases only."""
    if data.get("appliesOnSubscription"):
        errors.unsupported(path + ["appliesOnSubscription"], "subscriptions")
    if data.get("appliesOnOneTimePurchase") is False:
        errors.unsupported(path + ["appliesOnOneTimePurchase"], "subscription-only discounts")


def read_basic(ctx: Context, data: dict[str, Any], errors: Refusals) -> DiscountSpec:
    path = ["basicCodeDiscount"]
    spec = read_common(ctx, "basic", data, path, errors)
    gets = data.get("customerGets")
    if gets is None:
        errors.add(path + ["customerGets"], "Customer gets can't be blank", "BLANK")
        return spec
    _read_value(gets.get("value"), path, spec, errors)
    _read_purchase_types(gets, path + ["customerGets"], errors)
    items = gets.get("items")
    items_path = path + ["customerGets", "items"]
    if items is None:
        errors.add(items_path, "Items can't be blank", "BLANK")
    elif items.get("products") is not None or items.get("collections") is not None:
        errors.unsupported(items_path, "products or collections (it has none): use items: {all: true}")
    elif not items.get("all"):
        errors.add(items_path, "The discount must apply to some items", "APPLIES_ON_NOTHING")
    return spec


def read_free_shipping(ctx: Context, data: dict[str, Any], errors: Refusals) -> DiscountSpec:
    path = ["freeShippingCodeDiscount"]
    spec = read_common(ctx, "free_shipping", data, path, errors)
    if spec.combines_with.get("shippingDiscounts"):
        errors.add(path + ["combinesWith"], "The combinesWith settings are not valid for the discount class.",
                   "INVALID_COMBINES_WITH_FOR_DISCOUNT_CLASS")
    if (data.get("destination") or {}).get("countries") is not None:
        errors.unsupported(path + ["destination", "countries"], "country lists: it ships everywhere")
    if data.get("maximumShippingPrice") is not None:
        errors.unsupported(path + ["maximumShippingPrice"], "a maximum shipping price")
    _read_purchase_types(data, path, errors)
    return spec


# --- writing ----------------------------------------------------------------------------------------

def code_taken(ctx: Context, code: str) -> bool:
    """Codes are unique per store, compared case-insensitively."""
    return ctx.session.scalar(select(DiscountCode.id).where(DiscountCode.shop == ctx.shop,
                                                            DiscountCode.code_key == code.upper())) is not None


def create_discount(ctx: Context, spec: DiscountSpec) -> Discount:
    """One discount with one code. The state lock serialises requests, so the TAKEN check cannot race."""
    discount = Discount(
        id=State.new_id(), shop=ctx.shop, kind=spec.kind, title=spec.title, value_type=spec.value_type,
        value=spec.value, applies_on_each_item=spec.applies_on_each_item, minimum_subtotal=spec.minimum_subtotal,
        starts_at=spec.starts_at, ends_at=spec.ends_at, usage_limit=spec.usage_limit,
        applies_once_per_customer=spec.once_per_customer, customer_ids=spec.customer_ids,
        combines_with=spec.combines_with, tags=spec.tags, created_at=ctx.now, updated_at=ctx.now)
    ctx.session.add(discount)
    ctx.session.flush()
    ctx.session.add(DiscountCode(id=State.new_id(), shop=ctx.shop, discount_id=discount.id, code=spec.code,
                                 code_key=spec.code.upper(), usage_count=0))
    ctx.session.flush()
    return discount


def _create(ctx: Context, spec: DiscountSpec, errors: Refusals, input_name: str, payload: str) -> Plain:
    if not errors and code_taken(ctx, spec.code):
        errors.add([input_name, "code"], "Code must be unique. Please try a different code.", "TAKEN")
    node = None if errors else DiscountCodeNodeView(ctx, create_discount(ctx, spec))
    return Plain(payload, codeDiscountNode=node, userErrors=list(errors))


def discount_code_basic_create(root: Any, info: Info, basicCodeDiscount: dict[str, Any]) -> Plain:
    ctx: Context = info.context
    errors = Refusals()
    spec = read_basic(ctx, basicCodeDiscount, errors)
    return _create(ctx, spec, errors, "basicCodeDiscount", "DiscountCodeBasicCreatePayload")


def discount_code_free_shipping_create(root: Any, info: Info, freeShippingCodeDiscount: dict[str, Any]) -> Plain:
    ctx: Context = info.context
    errors = Refusals()
    spec = read_free_shipping(ctx, freeShippingCodeDiscount, errors)
    return _create(ctx, spec, errors, "freeShippingCodeDiscount", "DiscountCodeFreeShippingCreatePayload")


def _discount(ctx: Context, value: str, errors: Refusals) -> Discount | None:
    resource, number = parse_gid(value)
    row = ctx.session.get(Discount, number) if resource == "DiscountCodeNode" else None
    if row is None or row.shop != ctx.shop:
        errors.add(["id"], "Discount does not exist", "INVALID")
        return None
    return row


def discount_code_deactivate(root: Any, info: Info, id: str) -> Plain:
    """Stop new redemptions now; the discount keeps its rules and history and can be activated again."""
    ctx: Context = info.context
    errors = Refusals()
    row = _discount(ctx, id, errors)
    if row is not None and row.deactivated_at is None:
        row.deactivated_at = row.updated_at = ctx.now
    node = None if row is None else DiscountCodeNodeView(ctx, row)
    return Plain("DiscountCodeDeactivatePayload", codeDiscountNode=node, userErrors=list(errors))


def discount_code_activate(root: Any, info: Info, id: str) -> Plain:
    """Undo a deactivation (a discount past its own ``endsAt`` stays expired)."""
    ctx: Context = info.context
    errors = Refusals()
    row = _discount(ctx, id, errors)
    if row is not None and row.deactivated_at is not None:
        row.deactivated_at = None
        row.updated_at = ctx.now
    node = None if row is None else DiscountCodeNodeView(ctx, row)
    return Plain("DiscountCodeActivatePayload", codeDiscountNode=node, userErrors=list(errors))


def remove_discount(session: Session, row: Discount) -> str:
    """Delete a discount, its codes and its metafields (orders keep the code text they recorded); its gid."""
    deleted = gid("DiscountCodeNode", row.id)
    session.execute(delete(Metafield).where(Metafield.shop == row.shop, Metafield.owner_id == deleted))
    session.execute(delete(DiscountCode).where(DiscountCode.discount_id == row.id))
    session.delete(row)
    session.flush()
    return deleted


def discount_code_delete(root: Any, info: Info, id: str) -> Plain:
    """Delete the discount, its codes and its metafields, now."""
    ctx: Context = info.context
    errors = Refusals()
    row = _discount(ctx, id, errors)
    deleted = None if row is None else remove_discount(ctx.session, row)
    return Plain("DiscountCodeDeletePayload", deletedCodeDiscountId=deleted, userErrors=list(errors))


BULK_DELETE = "discountCodeBulkDelete"


def _bulk_targets(ids: list[str], errors: Refusals) -> list[int]:
    """The discount numbers a bulk delete names; each id must be a ``DiscountCodeNode`` id."""
    targets: list[int] = []
    for value in ids:
        resource, number = parse_gid(value)  # a malformed id is Shopify's top-level INVALID_GLOBAL_ID
        if resource != "DiscountCodeNode":
            errors.add(["ids"], f"Invalid id: {value} is not a code discount", "INVALID")
        elif number not in targets:
            targets.append(number)
    return targets


def discount_code_bulk_delete(root: Any, info: Info, ids: list[str] | None = None, savedSearchId: str | None = None,
                              search: str | None = None) -> Plain:
    """Start a job that deletes the given code discounts (at most 250 ids, Shopify's input limit).

    Exactly one of ``ids``, ``search`` and ``savedSearchId``; devstore has no saved searches and no
    discount search, so it takes ``ids`` only. The job runs a moment later (``devstore.admin.jobs``)
    and skips ids that name no discount of this store any more (deleted meanwhile, or never here):
    deleting twice is not an error.
    """
    ctx: Context = info.context
    errors = Refusals()
    given = [name for name, value in (("ids", ids), ("search", search), ("savedSearchId", savedSearchId))
             if value is not None]
    targets: list[int] = []
    if not given:
        errors.add([], "One of ids, search or savedSearchId is required", "MISSING_ARGUMENT")
    elif len(given) > 1:
        errors.add([], "Only one of ids, search or savedSearchId can be provided", "TOO_MANY_ARGUMENTS")
    elif given != ["ids"]:
        errors.unsupported([given[0]], f"{given[0]} (it has no discount search): give ids")
    elif not ids:
        errors.add(["ids"], "Ids can't be blank", "BLANK")
    else:
        targets = _bulk_targets(ids, errors)
    job = None if errors else jobs.job_view(jobs.start(ctx, BULK_DELETE, targets))
    return Plain("DiscountCodeBulkDeletePayload", job=job, userErrors=list(errors))


def run_bulk_delete(session: Session, job: Job) -> None:
    """The bulk delete job's work: remove each of its discounts that is still there."""
    for number in job.targets:
        row = session.get(Discount, number)
        if row is not None and row.shop == job.shop:
            remove_discount(session, row)
