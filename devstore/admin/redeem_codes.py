"""Many redeem codes on one discount: ``discountRedeemCodeBulkAdd`` and the ``DiscountRedeemCodeBulkCreation``
it answers with, and ``discountCodeRedeemCodeBulkDelete``.

As on Shopify, the mutation only checks its arguments and records the creation: ``done`` is false and
every count but ``codesCount`` is 0. The codes are added a moment later by a job
(``devstore.admin.jobs``, ``DevstoreConfig.job_seconds``), which judges each code on its own, in the
order given: a blank, multi-line or over-long code fails, so does a code repeated within the call
(its first occurrence is added) and a code that exists anywhere on the store, on any discount, in any
case. Each failure is a ``DiscountUserError`` on that code, the others are added. What Shopify
answers was taken from live captures (API 2026-04) published with the public shopify-draft-proxy
project (``fixtures/conformance/.../discounts/discount-redeem-code-bulk*.json``): the messages below,
``field: ["code"]`` and ``code: null`` on a code's error, "Code discount does not exist." for an
unknown discount, "Codes can't be blank" for no codes, and the top-level ``MAX_INPUT_SIZE_EXCEEDED``
for more than 250 codes (Shopify's documented maximum; ``devstore.admin.checks`` answers it).

``discountCodeRedeemCodeBulkDelete`` answers with a ``Job`` and removes the codes a moment later, like
``discountCodeBulkDelete`` (Shopify may answer ``done: true`` at once for a small deletion; devstore
always makes the client poll). Its refusals are Shopify's, from the same captures.

The state lock serialises every request and every job, so two creations (or a creation and a
``discountCodeBasicCreate``) racing for one code cannot both get it: whichever runs first wins, and
the other reports the code as taken.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devstore.admin import jobs
from devstore.admin.context import Context, gid, parse_gid
from devstore.admin.discount_views import DiscountCodeNodeView, redeem_code
from devstore.admin.discounts import MAX_LENGTH, Refusals
from devstore.admin.objects import Plain, View, iso, view
from devstore.admin.pagination import connection
from devstore.admin.views import Info
from devstore.models import Discount, DiscountCode, Job, RedeemCodeBulkCreation, RedeemCodeBulkCreationCode, now
from devstore.state import State

BULK_ADD = "discountRedeemCodeBulkAdd"
NO_DISCOUNT = "Code discount does not exist."
TOO_SHORT = "is too short (minimum is 1 character)"
NEWLINE = "cannot contain newline characters."
TOO_LONG = f"is too long (maximum is {MAX_LENGTH} characters)"
REPEATED = "Codes must be unique within BulkDiscountCodeCreation"
TAKEN = "must be unique. Please try a different code."


def code_discount(ctx: Context, value: str) -> Discount | None:
    """The store's code discount a ``DiscountCodeNode`` id names (a malformed id is INVALID_GLOBAL_ID)."""
    resource, number = parse_gid(value)
    row = ctx.session.get(Discount, number) if resource == "DiscountCodeNode" else None
    return row if row is not None and row.shop == ctx.shop else None


def code_error(message: str, field: list[str] | None = None, code: str | None = None) -> dict[str, Any]:
    """A ``DiscountUserError`` as stored on a bulk creation's code (Shopify leaves ``code`` null there)."""
    return {"field": ["code"] if field is None else field, "message": message, "code": code}


def user_error(error: dict[str, Any]) -> Plain:
    return Plain("DiscountUserError", field=error["field"], message=error["message"], code=error["code"],
                 extraInfo=None)


# --- the mutation -----------------------------------------------------------------------------------

def discount_redeem_code_bulk_add(root: Any, info: Info, discountId: str, codes: list[dict[str, Any]]) -> Plain:
    """Record a bulk creation of ``codes`` on the discount; its job adds them a moment later."""
    ctx: Context = info.context
    errors = Refusals()
    discount = code_discount(ctx, discountId)
    if discount is None:
        errors.add(["discountId"], NO_DISCOUNT, "INVALID")
    elif not codes:
        errors.add(["codes"], "Codes can't be blank", "BLANK")
    if errors:
        return Plain("DiscountRedeemCodeBulkAddPayload", bulkCreation=None, userErrors=list(errors))
    creation = start_creation(ctx, discount, [item["code"] for item in codes])  # type: ignore[arg-type]
    return Plain("DiscountRedeemCodeBulkAddPayload", bulkCreation=BulkCreationView(ctx, creation), userErrors=[])


def start_creation(ctx: Context, discount: Discount, codes: list[str]) -> RedeemCodeBulkCreation:
    """The creation row, its codes in order, and the job that will add them."""
    job = jobs.start(ctx, BULK_ADD, [])
    creation = RedeemCodeBulkCreation(id=State.new_id(), shop=ctx.shop, discount_id=discount.id, job_id=job.id,
                                      created_at=ctx.now, imported_count=0, failed_count=0)
    job.targets = [creation.id]
    ctx.session.add(creation)
    ctx.session.flush()
    ctx.session.add_all(RedeemCodeBulkCreationCode(creation_id=creation.id, position=index, code=code, errors=[])
                        for index, code in enumerate(codes))
    ctx.session.flush()
    return creation


# --- the job ----------------------------------------------------------------------------------------

def _value_errors(code: str) -> list[dict[str, Any]]:
    """What is wrong with a code whatever else is on the store."""
    if code == "":
        return [code_error(TOO_SHORT)]
    if "\n" in code or "\r" in code:
        return [code_error(NEWLINE)]
    if len(code) > MAX_LENGTH:
        return [code_error(TOO_LONG)]
    return []


def _taken(session: Session, shop: str, key: str) -> bool:
    return session.scalar(select(DiscountCode.id).where(DiscountCode.shop == shop,
                                                        DiscountCode.code_key == key)) is not None


def add_codes(session: Session, creation: RedeemCodeBulkCreation) -> None:
    """Judge each code of the creation in order; add the good ones to its discount, record why the others failed."""
    discount = session.get(Discount, creation.discount_id)
    rows = session.scalars(select(RedeemCodeBulkCreationCode).where(
        RedeemCodeBulkCreationCode.creation_id == creation.id).order_by(RedeemCodeBulkCreationCode.position)).all()
    seen: set[str] = set()
    for row in rows:
        key = row.code.upper()
        errors = _value_errors(row.code)
        if not errors and (discount is None or discount.shop != creation.shop):
            errors = [code_error(NO_DISCOUNT, ["discountId"], "INVALID")]  # deleted before the job ran
        elif not errors and key in seen:
            errors = [code_error(REPEATED)]
        elif not errors and _taken(session, creation.shop, key):
            errors = [code_error(TAKEN)]
        seen.add(key)
        row.errors = errors
        if errors:
            continue
        added = DiscountCode(id=State.new_id(), shop=creation.shop, discount_id=creation.discount_id, code=row.code,
                             code_key=key, usage_count=0)
        session.add(added)
        session.flush()  # the next code's TAKEN check sees this one
        row.redeem_code_id = added.id
    creation.imported_count = sum(1 for row in rows if row.redeem_code_id is not None)
    creation.failed_count = len(rows) - creation.imported_count
    if creation.imported_count and discount is not None:
        discount.updated_at = now()


def run_bulk_add(session: Session, job: Job) -> None:
    """The ``discountRedeemCodeBulkAdd`` job's work (it runs once; the job is then done)."""
    for number in job.targets:
        creation = session.get(RedeemCodeBulkCreation, number)
        if creation is not None and creation.shop == job.shop:
            add_codes(session, creation)


# --- reading a creation -----------------------------------------------------------------------------

@view("DiscountRedeemCodeBulkCreation")
class BulkCreationView(View):
    """A bulk creation: pending until its job has run, then its counts and each code's outcome."""

    read_scope = "read_discounts"
    _row: RedeemCodeBulkCreation

    @cached_property
    def _done(self) -> bool:
        job = self._ctx.session.get(Job, self._row.job_id)
        return job is not None and job.done_at is not None

    def _code(self, row: RedeemCodeBulkCreationCode) -> Plain:
        """One code's outcome; while the creation is pending, no errors and no redeem code yet (as on Shopify)."""
        added = None
        if self._done and row.redeem_code_id is not None:
            found = self._ctx.session.get(DiscountCode, row.redeem_code_id)  # gone once deleted
            added = None if found is None else redeem_code(found)
        errors = [user_error(error) for error in row.errors] if self._done else []
        return Plain("DiscountRedeemCodeBulkCreationCode", code=row.code, errors=errors, discountRedeemCode=added)

    def id(self, info: Info) -> str:
        return gid("DiscountRedeemCodeBulkCreation", self._row.id)

    def done(self, info: Info) -> bool:
        return self._done

    def createdAt(self, info: Info) -> str | None:
        return iso(self._row.created_at)

    def codesCount(self, info: Info) -> int:
        return self._ctx.session.scalar(select(func.count()).select_from(RedeemCodeBulkCreationCode).where(
            RedeemCodeBulkCreationCode.creation_id == self._row.id)) or 0

    def importedCount(self, info: Info) -> int:
        return self._row.imported_count if self._done else 0

    def failedCount(self, info: Info) -> int:
        return self._row.failed_count if self._done else 0

    def discountCode(self, info: Info) -> DiscountCodeNodeView | None:
        row = self._ctx.session.get(Discount, self._row.discount_id)
        return None if row is None or row.shop != self._ctx.shop else DiscountCodeNodeView(self._ctx, row)

    def codes(self, info: Info, **args: Any) -> Plain:
        rows = self._ctx.session.scalars(select(RedeemCodeBulkCreationCode).where(
            RedeemCodeBulkCreationCode.creation_id == self._row.id)).all()
        return connection("DiscountRedeemCodeBulkCreationCode", rows, lambda r: (r.position, r.position), args,
                          self._code)


def discount_redeem_code_bulk_creation(root: Any, info: Info, id: str) -> BulkCreationView | None:
    """``discountRedeemCodeBulkCreation(id:)``: this store's creation, or null (unknown, another store's,
    or another kind of id); a malformed id is Shopify's INVALID_GLOBAL_ID."""
    ctx: Context = info.context
    resource, number = parse_gid(id)
    row = ctx.session.get(RedeemCodeBulkCreation, number) if resource == "DiscountRedeemCodeBulkCreation" else None
    return None if row is None or row.shop != ctx.shop else BulkCreationView(ctx, row)


# --- discountCodeRedeemCodeBulkDelete ---------------------------------------------------------------

BULK_DELETE_CODES = "discountCodeRedeemCodeBulkDelete"


def _unplaced(message: str, code: str | None) -> Plain:
    """A user error Shopify reports without a field."""
    return Plain("DiscountUserError", field=None, message=message, code=code, extraInfo=None)


def _redeem_code_targets(ids: list[str], errors: Refusals) -> list[int]:
    """The redeem code numbers a deletion names; each id must be a ``DiscountRedeemCode`` id."""
    targets: list[int] = []
    for value in ids:
        resource, number = parse_gid(value)  # a malformed id is Shopify's top-level INVALID_GLOBAL_ID
        if resource != "DiscountRedeemCode":
            errors.add(["ids"], f"Invalid id: {value} is not a redeem code", "INVALID")
        elif number not in targets:
            targets.append(number)
    return targets


def _delete_refusals(ctx: Context, discountId: str, ids: list[str] | None, savedSearchId: str | None,
                     search: str | None) -> tuple[Refusals, Discount | None]:
    """Shopify's checks of a redeem code deletion, in its order and words (from live captures)."""
    errors = Refusals()
    given = [name for name, value in (("ids", ids), ("search", search), ("savedSearchId", savedSearchId))
             if value is not None]
    discount = None
    if not given:
        errors.append(_unplaced("Missing expected argument key: 'ids', 'search' or 'saved_search_id'.",
                                "MISSING_ARGUMENT"))
    elif len(given) > 1:
        errors.append(_unplaced("Only one of 'ids', 'search' or 'saved_search_id' is allowed.", "TOO_MANY_ARGUMENTS"))
    elif (discount := code_discount(ctx, discountId)) is None:
        errors.add(["discountId"], NO_DISCOUNT, "INVALID")
    elif savedSearchId is not None:
        errors.add(["savedSearchId"], "Invalid 'saved_search_id'.", "INVALID")  # devstore has no saved searches
    elif search is not None and not search.strip():
        errors.add(["search"], "'Search' can't be blank.", "BLANK")
    elif search is not None:
        errors.unsupported(["search"], "searching redeem codes: give ids")
    elif not ids:
        errors.append(_unplaced("Something went wrong, please try again.", None))  # Shopify's answer to ids: []
    return errors, discount


def discount_code_redeem_code_bulk_delete(root: Any, info: Info, discountId: str, ids: list[str] | None = None,
                                          savedSearchId: str | None = None, search: str | None = None) -> Plain:
    """Start a job that deletes redeem codes of one discount (at most 250 ids, Shopify's input limit).

    The job runs a moment later and removes each named code that still belongs to the discount; codes
    gone already, or another discount's, are skipped, so deleting twice is not an error. The discount
    itself stays, whatever codes it has left.
    """
    ctx: Context = info.context
    errors, discount = _delete_refusals(ctx, discountId, ids, savedSearchId, search)
    targets = [] if errors else _redeem_code_targets(ids or [], errors)
    job = None
    if not errors and discount is not None:
        job = jobs.job_view(jobs.start(ctx, BULK_DELETE_CODES, targets, parent_id=discount.id))
    return Plain("DiscountCodeRedeemCodeBulkDeletePayload", job=job, userErrors=list(errors))


def run_redeem_code_delete(session: Session, job: Job) -> None:
    """The deletion job's work: remove the named codes that are still the discount's."""
    rows = session.scalars(select(DiscountCode).where(DiscountCode.id.in_(job.targets), DiscountCode.shop == job.shop,
                                                      DiscountCode.discount_id == job.parent_id)).all()
    for row in rows:
        session.delete(row)
    discount = session.get(Discount, job.parent_id) if rows else None
    if discount is not None:
        discount.updated_at = now()
    session.flush()
