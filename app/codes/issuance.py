"""Exactly-once issuance: reserve a code, create it on the store, attach it to its customer.

The protocol (DESIGN.md, "Exactly-once issuance"):

1. ``reserve`` inserts an ``IssuedCode`` (``reserved``) with a fresh code, the program's terms and an
   idempotency key such as ``welcome:<shop>:<customer>``. The key is unique per shop: a second
   reservation for the same reason finds the first row and carries on from its status.
2. ``Issuer.create`` sends ``discountCodeBasicCreate`` (or the free-shipping one) with
   ``usageLimit: 1``, ``appliesOncePerCustomer``, ``endsAt`` at expiry and, when the program locks
   codes, ``context.customers.add``. Before each send it counts the attempt on the row; a row with
   attempts behind it (a crash, a lost answer, a concurrent worker) is looked up on the store first
   (``codeDiscountNodeByCode``, case-insensitive). Every discount the app creates carries the tag
   ``oncecode-ref-<row id>``, so a code found on the store is adopted only when it is ours; ``TAKEN``
   on a code that is not ours draws a new code.
3. The discount id is recorded (``created``), then ``Issuer.attach`` writes the metafields and the
   tag (``attached``; see ``app.codes.attachment``).

Revocation undoes both sides: ``Issuer.deactivate`` stops the discount on the store, and
``Issuer.detach`` takes the code off its customer (the metafields move on to the customer's newest
other open code of the kind, or are deleted; the tag goes when no open code of the kind is left).

No lock is held while the store is called. Every change of status or code is a compare-and-set
``UPDATE`` on what the worker last read (id, status, code), so two workers on one row cannot both
move it: the loser re-reads and continues from where the winner left it, and a create that lost
the race comes back ``TAKEN`` and is adopted by the look-up. That is what makes a job safe to run
twice, concurrently, or again after its worker was killed between the store's answer and our commit.

Batching: the shop's issuing jobs (``workers.codes.issue_codes``, one per slot) claim up to
``BATCH`` pending codes at a time, oldest first, create them one by one and attach them with one
``metafieldsSet``; each step is recorded as it lands (``created``, ``metafields_at``, ``attached``) so
that a job deferred half-way resumes without paying twice. A claim names the job and lapses after
``CLAIM_SECONDS``; it only spares duplicate work (the same job id, retried by rq, takes its claims
back), correctness never depends on it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, or_, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.codes import attachment, reconciliation
from app.codes.generator import CodeFormat
from app.codes.programs import code_format, get_program
from app.config import Settings
from app.db import Database, insert_ignoring_conflict, utcnow
from app.errors import BadRequest, Conflict, NotFound, OnceCodeError
from app.models import CODE_STATUSES, OPEN_STATUSES, Customer, IssuedCode, Program, Shop
from app.params import parse_date, shown, storable_text
from app.shopify.client import AdminClient, Throttled, UserErrors
from app.shopify.storefront import discount_url

log = logging.getLogger(__name__)

BATCH = attachment.MAX_METAFIELDS_PER_CALL // 3  # codes per job: 8 codes, 24 metafields, one metafieldsSet
MUTATION_POINTS = 10  # what Shopify charges a mutation
BATCH_POINTS = BATCH * 2 * MUTATION_POINTS + MUTATION_POINTS  # a create and a tag each, one metafieldsSet
CLAIM_SECONDS = 180  # outlasts a job's turn (20 s), a deferral (the bucket refills in 20 s) and its timeout
MAX_CODE_TRIES = 5  # fresh codes drawn for one row before it is failed (each collision is ~1e-6 likely)
DISCOUNT_TAG = "oncecode"
STRANDED_AFTER = timedelta(minutes=2)  # a code on its way this long untouched and unclaimed has lost its job


def on_its_way() -> ColumnElement[bool]:
    """Codes a job still has to carry to the store and the customer: reserved, or created and not
    yet attached (one whose customer was erased has nobody to be attached to)."""
    return or_(IssuedCode.status == "reserved",
               and_(IssuedCode.status == "created", IssuedCode.customer_id.is_not(None)))


class IssuanceFailed(OnceCodeError):
    """A code that cannot be issued, for a reason a person must read (the program needs changing)."""

    status = 409


def reference_tag(code_id: int) -> str:
    """The tag that marks a discount on the store as the one created for this row."""
    return f"oncecode-ref-{code_id}"


# --- reservation --------------------------------------------------------------------------------


def terms_of(program: Program) -> dict[str, Any]:
    """The program's offer as it stands, to be frozen on a code when it is reserved."""
    return {
        "name": program.name,
        "kind": program.kind,
        "value_type": program.value_type,
        "value": str(program.value),
        "minimum_subtotal": None if program.minimum_subtotal is None else str(program.minimum_subtotal),
        "lock_to_customer": program.lock_to_customer,
        "combines_with": {"product": program.combines_with_product, "order": program.combines_with_order,
                          "shipping": program.combines_with_shipping},
        "redirect_path": program.redirect_path,
    }


def reserve(session: Session, program: Program, customer: Customer | None, key: str,
            now: datetime | None = None) -> tuple[IssuedCode, bool]:
    """The code for ``key``: newly reserved (``True``) or the one an earlier attempt reserved (``False``).

    Insert first, ask afterwards: the unique (shop, idempotency key) decides between racing callers.
    A code that happens to equal one of the shop's codes is drawn again.
    """
    now = now or utcnow()
    fmt = code_format(program)
    expires_at = now + timedelta(days=program.expires_after_days) if program.expires_after_days else None
    for _ in range(MAX_CODE_TRIES):
        try:
            with session.begin_nested():
                inserted = insert_ignoring_conflict(
                    session, IssuedCode, ["shop_id", "idempotency_key"],
                    shop_id=program.shop_id, program_id=program.id,
                    customer_id=customer.id if customer else None, code=fmt.generate(), idempotency_key=key,
                    status="reserved", terms=terms_of(program), create_attempts=0, issued_at=now,
                    expires_at=expires_at, created_at=now, updated_at=now)
        except IntegrityError:  # (shop, code) taken by another of the shop's codes
            continue
        row = session.scalars(select(IssuedCode).where(IssuedCode.shop_id == program.shop_id,
                                                       IssuedCode.idempotency_key == key)).one()
        return row, inserted
    raise IssuanceFailed(f"could not draw a code unused in this store after {MAX_CODE_TRIES} tries; "
                         "make the program's codes longer")


def remember_customer(session: Session, shop_id: int, shopify_customer_id: int) -> tuple[Customer, bool]:
    """The shop's customer with this Shopify id, recorded now if new (``True``). Nothing personal is kept."""
    inserted = insert_ignoring_conflict(
        session, Customer, ["shop_id", "shopify_customer_id"], shop_id=shop_id,
        shopify_customer_id=shopify_customer_id, created_at=utcnow())
    customer = session.scalars(select(Customer).where(Customer.shop_id == shop_id,
                                                      Customer.shopify_customer_id == shopify_customer_id)).one()
    return customer, inserted


def issue_by_hand(session: Session, shop_id: int, program_id: int, shopify_customer_id: int,
                  request_key: str | None = None) -> tuple[IssuedCode, bool]:
    """A merchant's "give this customer a code of that program". The same ``request_key`` twice issues once."""
    program = get_program(session, shop_id, program_id)
    customer, _ = remember_customer(session, shop_id, shopify_customer_id)
    key = f"manual:{shop_id}:{program.id}:{shopify_customer_id}:{request_key or uuid.uuid4().hex}"
    return reserve(session, program, customer, key)


# --- reading ------------------------------------------------------------------------------------


def get_code(session: Session, shop_id: int, which: int | str, for_update: bool = False) -> IssuedCode:
    """One of the shop's codes by id, or by the code itself (any case); ``NotFound`` otherwise."""
    query = select(IssuedCode).where(IssuedCode.shop_id == shop_id)
    if isinstance(which, int):
        query = query.where(IssuedCode.id == which)
    else:
        query = query.where(IssuedCode.code == which.strip().upper())
    row = session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise NotFound(f"no code {which} for this store")
    return row


def code_json(row: IssuedCode, settings: Settings, shop_domain: str, shopify_customer_id: int | None,
              program: Program) -> dict[str, Any]:
    """A code as the API and the CLI show it."""
    def at(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    terms = row.terms
    return {
        "id": row.id,
        "code": row.code,
        "status": row.status,
        "program": {"id": program.id, "kind": program.kind, "name": program.name},
        "customer_id": shopify_customer_id,
        "url": discount_url(settings, shop_domain, row.code, terms.get("redirect_path")),
        "discount_id": row.discount_gid,
        "value_type": terms.get("value_type"),
        "value": terms.get("value"),
        "minimum_subtotal": terms.get("minimum_subtotal"),
        "locked_to_customer": terms.get("lock_to_customer"),
        "issued_at": at(row.issued_at),
        "expires_at": at(row.expires_at),
        "attached_at": at(row.attached_at),
        "redeemed_at": at(row.redeemed_at),
        "revoked_at": at(row.revoked_at),
        "open": is_open(row),
        "redemption": None if row.order_id is None else {
            "order_id": row.order_id, "order_name": row.order_name, "paid_at": at(row.redeemed_at),
            "order_total": _text(row.order_total), "order_subtotal": _text(row.order_subtotal),
            "discount_amount": _text(row.discount_amount), "currency": row.currency},
        "error": row.last_error,
    }


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def is_open(row: IssuedCode, now: datetime | None = None) -> bool:
    """Whether the code can still be used: on its way or on the store, unused, not past its end
    (even before the expiry sweep has caught up with it)."""
    return row.status in OPEN_STATUSES and (row.expires_at is None or row.expires_at > (now or utcnow()))


# --- the store's side ----------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def discount_input(row: IssuedCode, customer: str | None) -> tuple[str, dict[str, Any]]:
    """The create mutation and its variables for a reserved code (``customer`` is the customer's gid)."""
    return discount_create(row.terms, title=f"{row.terms['name']} {row.code}", code=row.code,
                           starts_at=row.issued_at, ends_at=row.expires_at, tags=[DISCOUNT_TAG, reference_tag(row.id)],
                           customer=customer)


def discount_create(terms: dict[str, Any], *, title: str, code: str, starts_at: datetime, ends_at: datetime | None,
                    tags: list[str], customer: str | None = None) -> tuple[str, dict[str, Any]]:
    """The create mutation and its variables for a discount with ``terms`` (``terms_of``): single use per
    code and once per customer; locked to ``customer`` when the terms lock codes. Every discount the
    app creates is built here (a customer's code, a friend code pool)."""
    combines = terms["combines_with"]
    free_shipping = terms["value_type"] == "free_shipping"
    body: dict[str, Any] = {
        "title": title,
        "code": code,
        "startsAt": _iso(starts_at),
        "usageLimit": 1,
        "appliesOncePerCustomer": True,
        # Locked: only this customer; otherwise anyone with the code, still once.
        "context": {"customers": {"add": [customer]}} if terms["lock_to_customer"] else {"all": "ALL"},
        # A free-shipping discount cannot combine with other shipping discounts (Shopify refuses it).
        "combinesWith": {"productDiscounts": combines["product"], "orderDiscounts": combines["order"],
                         "shippingDiscounts": combines["shipping"] and not free_shipping},
        "tags": tags,
    }
    if ends_at is not None:
        body["endsAt"] = _iso(ends_at)
    if terms["minimum_subtotal"] is not None:
        body["minimumRequirement"] = {"subtotal": {"greaterThanOrEqualToSubtotal": terms["minimum_subtotal"]}}
    if free_shipping:
        body["destination"] = {"all": True}
        return "discountCodeFreeShippingCreate", {"freeShippingCodeDiscount": body}
    if terms["value_type"] == "percentage":
        value: dict[str, Any] = {"percentage": float(Decimal(terms["value"]) / 100)}  # Shopify wants 0.1 for 10 %
    else:
        value = {"discountAmount": {"amount": terms["value"], "appliesOnEachItem": False}}
    body["customerGets"] = {"value": value, "items": {"all": True}}
    return "discountCodeBasicCreate", {"basicCodeDiscount": body}


@dataclass(frozen=True)
class Found:
    """A code discount on the store."""

    gid: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ShopRef:
    id: int
    domain: str


def _describe(exc: UserErrors) -> str:
    return "; ".join(f"{e.get('message')}" + (f" ({e['code']})" if e.get("code") else "") for e in exc.errors)


class Issuer:
    """Issues and revokes one shop's codes. Build one per job: it holds the shop's Admin client.

    Each database write is its own short transaction, committed before the next call to the store,
    so that whatever the store has accepted is never more than one step ahead of what we recorded.
    """

    def __init__(self, db: Database, settings: Settings, client: AdminClient, shop: ShopRef, claimant: str) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self.shop = shop
        self.claimant = claimant

    # -- claims --

    def claim(self, limit: int = BATCH) -> list[int]:
        """Take up to ``limit`` of the shop's pending codes for this job, oldest first."""
        now = utcnow()
        free = or_(IssuedCode.claimed_by.is_(None), IssuedCode.claimed_by == self.claimant,
                   IssuedCode.claim_expires_at < now)
        candidates = (select(IssuedCode.id).where(IssuedCode.shop_id == self.shop.id, on_its_way(), free)
                      .order_by(IssuedCode.id)
                      .limit(limit).with_for_update(skip_locked=True))
        with self.db.session_scope() as session:
            # Select, then update, in one transaction: the rows stay locked until the commit. An UPDATE over
            # a ``LIMIT ... SKIP LOCKED`` subquery may run the subquery more than once on PostgreSQL and
            # take more than ``limit`` rows.
            ids = session.scalars(candidates).all()
            if not ids:
                return []
            claimed = session.scalars(
                update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.id.in_(ids))
                .values(claimed_by=self.claimant, claim_expires_at=now + timedelta(seconds=CLAIM_SECONDS))
                .returning(IssuedCode.id)).all()
        return sorted(claimed)

    def release(self, ids: list[int]) -> None:
        if not ids:
            return
        with self.db.session_scope() as session:
            session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.id.in_(ids),
                                                     IssuedCode.claimed_by == self.claimant)
                            .values(claimed_by=None, claim_expires_at=None))

    def load(self, ids: list[int]) -> list[IssuedCode]:
        with self.db.session_scope() as session:
            return list(session.scalars(select(IssuedCode).where(IssuedCode.shop_id == self.shop.id,
                                                                 IssuedCode.id.in_(ids)).order_by(IssuedCode.id)))

    # -- the whole job --

    def issue(self, ids: list[int]) -> dict[str, int]:
        """Create and attach the claimed codes; a count of how they ended."""
        rows = [self.create(row) for row in self.load(ids)]
        self.attach([row for row in rows if row.status == "created"])
        outcome: dict[str, int] = {}
        for row in self.load(ids):
            outcome[row.status] = outcome.get(row.status, 0) + 1
        return outcome

    # -- create --

    def create(self, row: IssuedCode) -> IssuedCode:
        """Bring a reserved code to ``created`` (or ``failed``); other statuses are returned as they are."""
        for _ in range(MAX_CODE_TRIES * 2):
            if row.status != "reserved":
                return row
            if row.create_attempts:
                found = self.lookup(row.code)
                if found is not None:
                    row = (self._created(row, found.gid) if reference_tag(row.id) in found.tags
                           else self._redraw(row))
                    continue
            customer = self._customer_gid(row)
            if row.terms["lock_to_customer"] and customer is None:
                return self.fail(row, "the customer was erased before the code was created; a locked code "
                                      "needs its customer")
            row = self._count_attempt(row)
            if row.status != "reserved":
                continue
            name, variables = discount_input(row, customer)
            try:
                payload = self.client.mutate(name, variables)
            except Throttled:
                # Shopify ran nothing (a THROTTLED answer, or we never sent it): the attempt does not
                # count, or the job would pay for a look-up when it resumes. Should an earlier
                # timed-out send of this call have landed after all, the next create is TAKEN and adopted.
                self._compare_and_set(row, create_attempts=IssuedCode.create_attempts - 1)
                raise
            except UserErrors as exc:
                if "TAKEN" in exc.codes:
                    continue  # ours from an earlier attempt, or someone else's: the look-up decides
                return self.fail(row, f"the store refused the discount: {_describe(exc)}")
            row = self._created(row, payload["codeDiscountNode"]["id"])
        return self.fail(row, f"gave up after {MAX_CODE_TRIES * 2} attempts to create a code the store accepts")

    def lookup(self, code: str) -> Found | None:
        node = self.client.query("codeDiscountNodeByCode", {"code": code}).get("codeDiscountNodeByCode")
        if not node:
            return None
        return Found(gid=node["id"], tags=tuple((node.get("codeDiscount") or {}).get("tags") or ()))

    def _customer_gid(self, row: IssuedCode) -> str | None:
        if row.customer_id is None:
            return None
        with self.db.session_scope() as session:
            shopify_id = session.scalar(select(Customer.shopify_customer_id).where(
                Customer.shop_id == self.shop.id, Customer.id == row.customer_id))
        return attachment.customer_gid(shopify_id) if shopify_id is not None else None

    def _compare_and_set(self, row: IssuedCode, **values: Any) -> IssuedCode:
        """Apply ``values`` if the row still has the status and code we read; the row as it now is."""
        with self.db.session_scope() as session:
            session.execute(update(IssuedCode).where(
                IssuedCode.shop_id == self.shop.id, IssuedCode.id == row.id, IssuedCode.status == row.status,
                IssuedCode.code == row.code).values(**values))
        return self.load([row.id])[0]

    def _count_attempt(self, row: IssuedCode) -> IssuedCode:
        return self._compare_and_set(row, create_attempts=IssuedCode.create_attempts + 1)

    def _created(self, row: IssuedCode, gid: str) -> IssuedCode:
        now = self._compare_and_set(row, status="created", discount_gid=gid, last_error=None)
        if now.status == "revoked" and now.deactivated_at is None and now.discount_gid is None:
            # Revoked while the create was on its way: the discount we just made must not stay usable.
            with self.db.session_scope() as session:
                session.execute(update(IssuedCode).where(IssuedCode.id == row.id,
                                                         IssuedCode.discount_gid.is_(None)).values(discount_gid=gid))
            return self.deactivate(self.load([row.id])[0])
        return now

    def _redraw(self, row: IssuedCode) -> IssuedCode:
        """The code is someone else's on the store: give the row a fresh one (never sent, so no look-up)."""
        fmt = self._format(row)
        for _ in range(MAX_CODE_TRIES):
            try:
                moved = self._compare_and_set(row, code=fmt.generate(), create_attempts=0)
            except IntegrityError:
                continue
            log.info("code taken on the store by another discount; drew a new one",
                     extra={"shop": self.shop.domain, "code_id": row.id})
            return moved
        return self.fail(row, f"could not draw a code unused in this store after {MAX_CODE_TRIES} tries")

    def _format(self, row: IssuedCode) -> CodeFormat:
        with self.db.session_scope() as session:
            return code_format(session.get_one(Program, row.program_id))

    # -- attach --

    def attach(self, rows: list[IssuedCode]) -> None:
        """Metafields for the rows still without them (one ``metafieldsSet`` per ``BATCH``), then each customer's tags.

        Each step is recorded as soon as the store has accepted it (``metafields_at``, then ``attached``),
        so a job deferred half-way does not spend the metafields' points again when it resumes.
        """
        customers = self._shopify_customer_ids(rows)
        rows = [row for row in rows if row.customer_id in customers]
        missing = [row for row in rows if row.metafields_at is None]
        done = {row.id for row in rows if row.metafields_at is not None}
        for start in range(0, len(missing), BATCH):
            done |= self._set_metafields(missing[start:start + BATCH], customers)
        by_customer: dict[int, list[IssuedCode]] = {}
        for row in rows:
            if row.id in done:
                by_customer.setdefault(customers[row.customer_id], []).append(row)  # type: ignore[index]
        for shopify_id, own in by_customer.items():
            tags = sorted({attachment.customer_tag(row.terms["kind"]) for row in own})
            try:
                self.client.mutate("tagsAdd", {"id": attachment.customer_gid(shopify_id), "tags": tags})
            except UserErrors as exc:
                for row in own:
                    self.fail(row, f"the store refused the customer tag: {_describe(exc)}")
                continue
            for row in own:
                self._compare_and_set(row, status="attached", attached_at=utcnow(), last_error=None)

    def _set_metafields(self, rows: list[IssuedCode], customers: dict[int, int]) -> set[int]:
        """Write the rows' metafields in one call (all or nothing on Shopify's side); the ids it wrote.

        Rows the store refuses (their customer was deleted, say) are failed and the others set again.
        """
        inputs: list[tuple[IssuedCode, dict[str, Any]]] = []
        for row in rows:
            url = discount_url(self.settings, self.shop.domain, row.code, row.terms.get("redirect_path"))
            owner = attachment.customer_gid(customers[row.customer_id])  # type: ignore[index]
            inputs += [(row, item) for item in attachment.metafield_inputs(
                row.terms["kind"], owner, row.code, _iso(row.expires_at), url)]
        while inputs:
            try:
                self.client.mutate("metafieldsSet", {"metafields": [item for _, item in inputs]})
            except UserErrors as exc:
                culprits = {inputs[i][0].id for i in _element_indexes(exc, len(inputs))} or {r.id for r, _ in inputs}
                for row in {row.id: row for row, _ in inputs if row.id in culprits}.values():
                    self.fail(row, f"the store refused the customer metafields: {_describe(exc)}")
                inputs = [(row, item) for row, item in inputs if row.id not in culprits]
                continue
            written = {row.id for row, _ in inputs}
            with self.db.session_scope() as session:
                session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id,
                                                         IssuedCode.id.in_(written), IssuedCode.status == "created")
                                .values(metafields_at=utcnow()))
                # Revoked while this call was on its way: the customer shows it again, so it must be taken
                # off again (the stranded sweep queues the revoke job for it).
                session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id,
                                                         IssuedCode.id.in_(written), IssuedCode.status == "revoked")
                                .values(metafields_at=utcnow(), detached_at=None))
            return written
        return set()

    def _shopify_customer_ids(self, rows: list[IssuedCode]) -> dict[int, int]:
        ids = {row.customer_id for row in rows if row.customer_id is not None}
        if not ids:
            return {}
        with self.db.session_scope() as session:
            return dict(session.execute(select(Customer.id, Customer.shopify_customer_id).where(
                Customer.shop_id == self.shop.id, Customer.id.in_(ids))).all())

    # -- failures and revocation --

    def fail(self, row: IssuedCode, reason: str) -> IssuedCode:
        """Record a permanent failure where a person can see it (``flask codes list --status failed``)."""
        log.warning("code failed", extra={"shop": self.shop.domain, "code_id": row.id, "reason": reason})
        return self._compare_and_set(row, status="failed", last_error=reason[:2000])

    def deactivate(self, row: IssuedCode) -> IssuedCode:
        """Make a revoked code unusable on the store (idempotent: a second call changes nothing)."""
        gid = row.discount_gid
        if gid is None and row.create_attempts:
            found = self.lookup(row.code)
            if found is not None and reference_tag(row.id) in found.tags:
                gid = found.gid
        if gid is not None:
            try:
                self.client.mutate("discountCodeDeactivate", {"id": gid})
            except UserErrors as exc:
                if "does not exist" not in _describe(exc):
                    raise
        with self.db.session_scope() as session:
            session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.id == row.id)
                            .values(discount_gid=gid, deactivated_at=utcnow()))
        return self.load([row.id])[0]

    def detach(self, row: IssuedCode) -> IssuedCode:
        """Take a revoked code off its customer, so that their emails, theme and Flow stop offering it.

        The kind's metafields (one code at a time, per kind: see ``app.codes.attachment``) are set to the
        customer's newest other open code of that kind that was written to them, or deleted when there is
        none; the kind's tag is removed when the customer has no other open code of that kind at all (one
        still on its way keeps it: its own attach comes next). Kind, not program, because that is what the
        metafields and the tag are keyed by. Idempotent: it computes what the customer should show from our
        rows and sets exactly that. Should another job write this customer's metafields meanwhile, the
        state is read again after the calls and they are made again until it holds still.
        """
        shopify_id = self._customer_shopify_id(row)
        problem = None
        if shopify_id is not None:
            try:
                self._set_customer_side(row, attachment.customer_gid(shopify_id))
            except UserErrors as exc:
                # A refusal (the customer was deleted on the store, say) does not go away by retrying.
                problem = f"the store refused to take the code off its customer: {_describe(exc)}"
                log.warning("revoked code not taken off its customer",
                            extra={"shop": self.shop.domain, "code_id": row.id, "reason": problem})
        with self.db.session_scope() as session:
            session.execute(update(IssuedCode).where(IssuedCode.shop_id == self.shop.id, IssuedCode.id == row.id)
                            .values(detached_at=utcnow(), **({"last_error": problem} if problem else {})))
        log.info("revoked code taken off its customer", extra={"shop": self.shop.domain, "code_id": row.id})
        return self.load([row.id])[0]

    def _set_customer_side(self, row: IssuedCode, owner: str) -> None:
        kind = row.terms["kind"]
        state = self._customer_side(row, kind)
        for _ in range(3):
            shown, any_open = state
            if shown is not None:
                url = discount_url(self.settings, self.shop.domain, shown.code, shown.terms.get("redirect_path"))
                inputs = attachment.metafield_inputs(kind, owner, shown.code, _iso(shown.expires_at), url)
                if shown.expires_at is None:  # an earlier code's expiry must not stay beside this one
                    self._delete_metafields(owner, [attachment.fields_for(kind).expires_at])
                self.client.mutate("metafieldsSet", {"metafields": inputs})
            else:
                keys = attachment.fields_for(kind)
                self._delete_metafields(owner, [keys.code, keys.expires_at, keys.url])
            if not any_open:
                self.client.mutate("tagsRemove", {"id": owner, "tags": [attachment.customer_tag(kind)]})
            again = self._customer_side(row, kind)
            if _same_side(again, state):
                return
            state = again

    def _delete_metafields(self, owner: str, keys: list[str]) -> None:
        self.client.mutate("metafieldsDelete", {"metafields": [
            {"ownerId": owner, "namespace": attachment.NAMESPACE, "key": key} for key in keys]})

    def _customer_shopify_id(self, row: IssuedCode) -> int | None:
        if row.customer_id is None:
            return None
        with self.db.session_scope() as session:
            return session.scalar(select(Customer.shopify_customer_id).where(
                Customer.shop_id == self.shop.id, Customer.id == row.customer_id))

    def _customer_side(self, row: IssuedCode, kind: str) -> tuple[IssuedCode | None, bool]:
        """(the newest other open code of ``kind`` already written to the row's customer, whether the
        customer has any other open code of ``kind`` at all, written or on its way)."""
        now = utcnow()
        with self.db.session_scope() as session:
            others = list(session.scalars(
                select(IssuedCode).join(Program, Program.id == IssuedCode.program_id)
                .where(IssuedCode.shop_id == self.shop.id, IssuedCode.customer_id == row.customer_id,
                       IssuedCode.id != row.id, Program.kind == kind, IssuedCode.status.in_(OPEN_STATUSES),
                       or_(IssuedCode.expires_at.is_(None), IssuedCode.expires_at > now))
                .order_by(IssuedCode.id.desc())))
        written = [code for code in others if code.metafields_at is not None and code.status != "reserved"]
        return (written[0] if written else None), bool(others)


def _same_side(a: tuple[IssuedCode | None, bool], b: tuple[IssuedCode | None, bool]) -> bool:
    return (a[0].id if a[0] else None, a[1]) == (b[0].id if b[0] else None, b[1])


def needs_detaching(row: IssuedCode) -> bool:
    """A revoked code that may still be on its customer (its metafields were written) and was not taken off."""
    return (row.status == "revoked" and row.customer_id is not None and row.detached_at is None
            and (row.metafields_at is not None or row.attached_at is not None))


def revoke_done(row: IssuedCode) -> bool:
    """Whether a revoked code is both deactivated on the store and off its customer."""
    return row.deactivated_at is not None and not needs_detaching(row)


def _element_indexes(exc: UserErrors, size: int) -> set[int]:
    """Which inputs a ``metafieldsSet`` refusal names (``elementIndex``, or the index in ``field``)."""
    found = set()
    for error in exc.errors:
        index = error.get("elementIndex")
        field = error.get("field") or []
        if index is None and len(field) > 1 and str(field[1]).isdigit():
            index = int(field[1])
        if isinstance(index, int) and 0 <= index < size:
            found.add(index)
    return found


def fail_claimed(db: Database, shop_id: int, ids: list[int], reason: str) -> None:
    """Fail whichever of ``ids`` are still pending (the last retry of a job gave up on them)."""
    if not ids:
        return
    with db.session_scope() as session:
        session.execute(update(IssuedCode).where(
            IssuedCode.shop_id == shop_id, IssuedCode.id.in_(ids), IssuedCode.status.in_(("reserved", "created")))
            .values(status="failed", last_error=reason[:2000], claimed_by=None, claim_expires_at=None))


def request_revoke(session: Session, shop_id: int, which: int | str) -> IssuedCode:
    """Mark a code revoked now (so no job issues it further); the store is told by a job. Idempotent."""
    row = get_code(session, shop_id, which, for_update=True)
    if row.status in ("redeemed", "expired"):
        raise Conflict(f"code {row.code} is already {row.status}; there is nothing to revoke")
    if row.status != "revoked":
        row.status, row.revoked_at, row.deactivated_at, row.detached_at = "revoked", utcnow(), None, None
    return row


def request_retry(session: Session, shop_id: int, which: int | str) -> IssuedCode:
    """Put a failed code back on its way (after fixing what made it fail): created if the store has it."""
    row = get_code(session, shop_id, which, for_update=True)
    if row.status != "failed":
        raise Conflict(f"code {row.code} is {row.status}; only failed codes are retried")
    row.status = "created" if row.discount_gid else "reserved"
    row.last_error, row.claimed_by, row.claim_expires_at = None, None, None
    return row


def stranded(session: Session, limit: int = 500) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(shop id, code id) of codes whose job seems lost: pending but untouched for a while and
    unclaimed, and revoked codes the store has not yet deactivated or that are still on their
    customer. Oldest first."""
    now = utcnow()
    idle = and_(IssuedCode.updated_at < now - STRANDED_AFTER,
                or_(IssuedCode.claim_expires_at.is_(None), IssuedCode.claim_expires_at < now))
    to_issue = session.execute(select(IssuedCode.shop_id, IssuedCode.id).where(on_its_way(), idle)
                               .order_by(IssuedCode.id).limit(limit)).all()
    on_customer = and_(IssuedCode.customer_id.is_not(None), IssuedCode.detached_at.is_(None),
                       or_(IssuedCode.metafields_at.is_not(None), IssuedCode.attached_at.is_not(None)))
    to_revoke = session.execute(select(IssuedCode.shop_id, IssuedCode.id).where(
        IssuedCode.status == "revoked", or_(IssuedCode.deactivated_at.is_(None), on_customer), idle)
        .order_by(IssuedCode.id).limit(limit)).all()
    return [tuple(r) for r in to_issue], [tuple(r) for r in to_revoke]  # type: ignore[misc]


@dataclass(frozen=True)
class CodeFilter:
    """Which of a shop's codes a list or an export shows. ``status`` is one of ``CODE_STATUSES`` or
    ``open`` (usable now); ``code`` matches codes starting with it, in any case (codes are stored upper
    case, and Shopify compares them case-insensitively); ``issued_from``/``issued_to`` bound
    ``issued_at`` (from included, to excluded). Every filter is answered from an index of
    ``issued_codes`` (see ``bench/admin/codes_explain.py``)."""

    status: str | None = None
    program_id: int | None = None
    shopify_customer_id: int | None = None
    code: str | None = None
    issued_from: datetime | None = None
    issued_to: datetime | None = None

    def apply(self, session: Session, query: Select[Any], shop_id: int) -> Select[Any]:
        """``query`` (over ``IssuedCode`` outer-joined to ``Customer``) narrowed to these codes."""
        query = query.where(IssuedCode.shop_id == shop_id)
        if self.status == "open":
            query = query.where(IssuedCode.status.in_(OPEN_STATUSES),
                                or_(IssuedCode.expires_at.is_(None), IssuedCode.expires_at > utcnow()))
        elif self.status is not None:
            query = query.where(IssuedCode.status == self.status)
        if self.program_id is not None:
            query = query.where(IssuedCode.program_id == self.program_id)
        if self.shopify_customer_id is not None:
            query = query.where(Customer.shop_id == shop_id, Customer.shopify_customer_id == self.shopify_customer_id)
        if self.code:
            query = query.where(*code_prefix(self.code, code_point_order(session)))
        if self.issued_from is not None:
            query = query.where(IssuedCode.issued_at >= self.issued_from)
        if self.issued_to is not None:
            query = query.where(IssuedCode.issued_at < self.issued_to)
        return query


CODE_FILTERS = (*CODE_STATUSES, "open")
CODE_SEARCH_MAX = 64  # a code's length (the column's)


def code_filter(shop: Shop, *, status: str | None = None, program_id: int | None = None,
                shopify_customer_id: int | None = None, code: str | None = None, first: str | None = None,
                last: str | None = None) -> CodeFilter:
    """A ``CodeFilter`` from what a person typed: ``first``/``last`` are ``YYYY-MM-DD`` days of the store's
    time zone (``metrics.Period``), both included, either may be left out. ``BadRequest`` naming the
    parameter (``status``, ``code``, ``from``, ``to``) for anything else."""
    from app.codes.metrics import Period, time_zone_of

    if status is not None and status not in CODE_FILTERS:
        raise BadRequest(f"status must be one of {', '.join(CODE_FILTERS)}, not {shown(status)}")
    code = (code or "").strip() or None
    if code is not None:
        if len(code) > CODE_SEARCH_MAX:
            raise BadRequest(f"code must be at most {CODE_SEARCH_MAX} characters, not {len(code)}")
        storable_text(code, "code")
    zone = time_zone_of(shop)
    start = parse_date(first, "from") if first else None
    end = parse_date(last, "to") if last else None
    if start and end and start > end:
        raise BadRequest(f"from ({start.isoformat()}) must not be after to ({end.isoformat()})")
    return CodeFilter(status=status, program_id=program_id, shopify_customer_id=shopify_customer_id, code=code,
                      issued_from=Period(start, start, zone).start if start else None,
                      issued_to=Period(end, end, zone).end if end else None)


def code_prefix(typed: str, ranged: bool) -> list[ColumnElement[bool]]:
    """Codes starting with ``typed`` (any case): ``LIKE 'TEXT%'``, which decides, and, when ``ranged``,
    the same as a range (``>= 'TEXT'`` and ``< 'TEXU'``) so that the (shop, code) index finds them.
    PostgreSQL uses a plain index for ``LIKE`` only under the C collation; under a code-point order
    (C, C.UTF-8, SQLite's) the range holds exactly the codes with the prefix, but under a linguistic
    one (en_US: hyphens ignored at first) it could leave some out, hence ``code_point_order``."""
    prefix = typed.strip().upper()
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches: list[ColumnElement[bool]] = [IssuedCode.code.like(escaped + "%", escape="\\")]
    if ranged and prefix and prefix.isascii() and prefix[-1] != "\x7f":
        matches += [IssuedCode.code >= prefix, IssuedCode.code < prefix[:-1] + chr(ord(prefix[-1]) + 1)]
    return matches


_CODE_POINT_ORDER: dict[str, bool] = {}


def code_point_order(session: Session) -> bool:
    """Whether the database compares text by code point (asked once per database): upper case before
    lower case, and punctuation counted where it stands."""
    bind = session.get_bind()
    key = bind.engine.url.render_as_string(hide_password=True)
    if key not in _CODE_POINT_ORDER:
        _CODE_POINT_ORDER[key] = bool(session.scalar(text("SELECT 'B' < 'a' AND 'A-Z' < 'A.' AND 'A.' < 'AA'")))
    return _CODE_POINT_ORDER[key]


def list_codes(session: Session, shop_id: int, *, status: str | None = None, program_id: int | None = None,
               shopify_customer_id: int | None = None, code: str | None = None,
               issued_from: datetime | None = None, issued_to: datetime | None = None,
               before: int | None = None, after: int | None = None, limit: int = 50,
               where: CodeFilter | None = None, by_issue: bool = False) -> list[tuple[IssuedCode, Program, int | None]]:
    """The shop's codes, newest first, with their program and customer's Shopify id (``CodeFilter``).
    ``where`` (``code_filter``) replaces the separate filters. Keyset pages: ``before`` an id (older
    codes), or ``after`` one (the newer codes just above it, still shown newest first).

    Newest first is by id, or with ``by_issue`` by (``issued_at``, id), the order the admin page uses:
    the shop's (shop, issued_at) index then yields the codes in order for every filter, a date range
    included (by id, PostgreSQL walks the primary key backwards through every newer code, of every
    shop, before it reaches a range a year back). A code's id and its issue time rise together (the
    time is taken as the row is reserved), so both orders show the same list."""
    query = (select(IssuedCode, Program, Customer.shopify_customer_id)
             .join(Program, Program.id == IssuedCode.program_id)
             .outerjoin(Customer, Customer.id == IssuedCode.customer_id))
    where = where or CodeFilter(status, program_id, shopify_customer_id, code, issued_from, issued_to)
    query = where.apply(session, query, shop_id)
    mark = before if before is not None else after
    if by_issue and mark is not None:
        at = (select(IssuedCode.issued_at).where(IssuedCode.shop_id == shop_id, IssuedCode.id == mark)
              .scalar_subquery())
        pair = tuple_(IssuedCode.issued_at, IssuedCode.id)
        if before is not None:  # the issue-time bound alone is what the index can use; the pair decides
            query = query.where(IssuedCode.issued_at <= at, pair < tuple_(at, mark))
        else:
            query = query.where(IssuedCode.issued_at >= at, pair > tuple_(at, mark))
    elif before is not None:
        query = query.where(IssuedCode.id < before)
    elif after is not None:
        query = query.where(IssuedCode.id > after)
    keys = (IssuedCode.issued_at, IssuedCode.id) if by_issue else (IssuedCode.id,)
    if after is not None:
        query = query.order_by(*(key.asc() for key in keys)).limit(limit)
        return [tuple(row) for row in reversed(session.execute(query).all())]  # type: ignore[misc]
    query = query.order_by(*(key.desc() for key in keys)).limit(limit)
    return [tuple(row) for row in session.execute(query).all()]  # type: ignore[misc]


EXPORT_BATCH = 2000  # rows fetched per round trip of an export's server-side cursor


def export_rows(session: Session, shop_id: int, where: CodeFilter) -> Iterator[Row[Any]]:
    """The shop's codes for a CSV export, newest first (as the admin's list: by issue time): plain rows
    (no ORM objects, so nothing piles up in the session), read through a server-side cursor
    ``EXPORT_BATCH`` at a time, so memory stays flat however many codes there are. Columns: code,
    program, status, customer_id, issued_at, expires_at, redeemed_at, order_name, order_total,
    discount_amount, currency."""
    query = (select(IssuedCode.code, Program.name.label("program"), IssuedCode.status,
                    Customer.shopify_customer_id.label("customer_id"), IssuedCode.issued_at, IssuedCode.expires_at,
                    IssuedCode.redeemed_at, IssuedCode.order_name, IssuedCode.order_total,
                    IssuedCode.discount_amount, IssuedCode.currency)
             .join(Program, Program.id == IssuedCode.program_id)
             .outerjoin(Customer, Customer.id == IssuedCode.customer_id))
    query = where.apply(session, query, shop_id).order_by(IssuedCode.issued_at.desc(), IssuedCode.id.desc())
    yield from session.execute(query.execution_options(yield_per=EXPORT_BATCH))


def timeline(row: IssuedCode) -> list[dict[str, Any]]:
    """A code's life as a person reads it, from the row's own columns: each step with its moment (None
    when the row does not keep one) and whether it happened (``done``). Reserved, created on the store,
    attached to the customer, then how it ended: redeemed, expired, revoked (and deactivated), failed."""
    on_store = row.discount_gid is not None
    steps: list[dict[str, Any]] = [
        {"step": "reserved", "label": "Reserved", "at": row.issued_at, "done": True},
        {"step": "created", "label": "Created on your store", "at": None, "done": on_store},
        {"step": "attached", "label": "Attached to the customer", "at": row.attached_at,
         "done": row.attached_at is not None},
    ]
    if row.customer_id is None and row.attached_at is None:
        steps[-1]["label"] = "No customer to attach it to"
    if row.status == "redeemed" or row.redeemed_at is not None:
        steps.append({"step": "redeemed", "label": f"Redeemed on order {row.order_name or row.order_id}",
                      "at": row.redeemed_at, "done": True})
    elif row.status == "revoked":
        steps.append({"step": "revoked", "label": "Revoked", "at": row.revoked_at, "done": True})
        steps.append({"step": "deactivated", "label": "Deactivated on your store", "at": row.deactivated_at,
                      "done": row.deactivated_at is not None})
    elif row.status == "failed":
        steps.append({"step": "failed", "label": "Failed", "at": row.updated_at, "done": True})
    elif row.status == "expired" or (row.expires_at is not None and row.expires_at <= utcnow()):
        steps.append({"step": "expired", "label": "Expired", "at": row.expires_at, "done": True})
    elif row.expires_at is not None:
        steps.append({"step": "expires", "label": "Expires", "at": row.expires_at, "done": False})
    return steps


def describe_code(session: Session, settings: Settings, shop_id: int, shop_domain: str,
                  row: IssuedCode) -> dict[str, Any]:
    """``code_json`` for one row, reading its program and customer."""
    program = session.get_one(Program, row.program_id)
    shopify_id = None
    if row.customer_id is not None:
        shopify_id = session.scalar(select(Customer.shopify_customer_id).where(
            Customer.shop_id == shop_id, Customer.id == row.customer_id))
    shown = code_json(row, settings, shop_domain, shopify_id, program)
    shown["anomalies"] = reconciliation.anomalies_of(session, shop_id, row.id)
    return shown
