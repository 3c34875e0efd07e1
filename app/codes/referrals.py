"""Referral links: each customer's own ``APP_URL/r/{token}``, to share with friends.

- **The token** is ``secrets.token_urlsafe(16)``: 128 random bits, 22 URL-safe characters, never
  derived from the customer or from anything sequential, so a link cannot be guessed from another.
- **One active link per customer and shop**, any number of retired ones. Creation inserts and lets
  the partial unique index on (shop, customer) where active decide between racing callers (a
  ``customers/create`` job and a merchant's request, say): the loser finds the winner's link.
- **"The referral program is on"** means the shop's ``referral_reward`` program is active. The link
  belongs to the advocate, and ``referral_reward`` is the advocate's side of the loop (what they earn
  when a friend buys); ``referral_friend`` is what the friend gets. A signup gets a link only then; a
  merchant can create links by hand at any time (to prepare a launch, say).
- **On the customer**: the link's URL is written as the app-owned metafield ``referral_link`` (type
  ``url``, namespace ``$app`` like the codes' metafields, with a definition created at install) by a
  job (``workers.referrals.sync_referral_link``), and removed when the link is retired. The job sets
  whatever the customer's rows say (their active link, or none), so jobs for a retirement and a new
  link may run in any order and still leave the right value.
- **Opening a link** (``land``) costs one indexed look-up and, for an active link, a click counted
  with one atomic ``UPDATE`` on the link and one upsert of the link's row for the hour
  (``referral_click_hours``, what the metrics read); it never calls the Admin API.

No Flask here: the API (``app.api.referrals``), the CLI (``app.cli.referrals``) and the landing page
(``app.referrals.routes``) call these functions.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.codes import attachment
from app.codes.issuance import remember_customer
from app.config import Settings
from app.db import Database, utcnow
from app.errors import BadRequest, NotFound, OnceCodeError
from app.models import LINK_STATUSES, Customer, Program, ReferralClickHour, ReferralLink, Shop
from app.params import SHOPIFY_ID_MAX, parse_shopify_id, shown
from app.shopify.client import AdminClient, UserErrors

log = logging.getLogger(__name__)

TOKEN_BYTES = 16  # 128 bits of randomness (the floor is 96)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # what token_urlsafe(16) produces
MAX_TOKEN_TRIES = 3  # a collision of 128-bit tokens does not happen; a retry costs nothing to have
CUSTOMER_GID_RE = re.compile(r"gid://shopify/Customer/([0-9]+)")
PROGRAM_KIND = "referral_reward"  # whose ``active`` flag means "the referral program is on" (see above)
METAFIELD_KEY = attachment.REFERRAL_LINK_KEY
STRANDED_AFTER = timedelta(minutes=2)  # a change this old whose metafield job has not run has lost it


class LinkRefused(OnceCodeError):
    """No link could be made just now (three 128-bit tokens in a row were taken: it does not happen)."""

    status = 503


# --- tokens, URLs, ids ----------------------------------------------------------------------------


def new_token() -> str:
    """A fresh link token: 128 bits from the operating system's CSPRNG."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def looks_like_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


def link_url(settings: Settings, token: str) -> str:
    """The link a customer shares. The one place it is built."""
    return f"{settings.app_url}/r/{token}"


def shopify_customer_id(value: object, name: str = "customer_id") -> int:
    """A Shopify customer id from a number, ASCII digits or ``gid://shopify/Customer/<id>``: 1 to
    2^63 - 1, parsed like every id (``app.params``). Anything else is a ``BadRequest`` naming ``name``."""
    number = value
    if isinstance(value, str) and (match := CUSTOMER_GID_RE.fullmatch(value)):
        number = match.group(1)
    try:
        return parse_shopify_id(number, name)
    except BadRequest:
        raise BadRequest(f"{name} must be a Shopify customer id (a number from 1 to {SHOPIFY_ID_MAX} or "
                         f"gid://shopify/Customer/<id>), not {shown(value)}") from None


# --- creating and retiring ------------------------------------------------------------------------


def program_on(session: Session, shop_id: int) -> bool:
    """Whether the shop's referral program is on (its ``referral_reward`` program is active)."""
    return bool(session.scalar(select(Program.active).where(Program.shop_id == shop_id,
                                                            Program.kind == PROGRAM_KIND)))


def active_link(session: Session, shop_id: int, customer_id: int) -> ReferralLink | None:
    return session.scalar(select(ReferralLink).where(ReferralLink.shop_id == shop_id,
                                                     ReferralLink.customer_id == customer_id,
                                                     ReferralLink.status == "active"))


def create_link(session: Session, shop_id: int, shopify_customer_id: int) -> tuple[ReferralLink, bool]:
    """The customer's active link: made now (``True``) or the one they have (``False``).

    Insert first, ask afterwards: the partial unique index (shop, customer) where active lets one of
    several racing callers in; the others find its link. The caller commits, then queues the
    metafield job for a new link (``app.queues.enqueue_referral_link``).
    """
    customer, _ = remember_customer(session, shop_id, shopify_customer_id)
    for _ in range(MAX_TOKEN_TRIES):
        try:
            with session.begin_nested():
                link = ReferralLink(shop_id=shop_id, customer_id=customer.id, token=new_token(), status="active",
                                    created_at=utcnow(), clicks=0)
                session.add(link)
        except IntegrityError:
            existing = active_link(session, shop_id, customer.id)
            if existing is not None:
                return existing, False
            continue  # the token itself collided: draw another
        return link, True
    raise LinkRefused("could not draw an unused link token; try again")  # pragma: no cover - 2^-128 odds


@dataclass(frozen=True)
class SignUpLink:
    link: ReferralLink | None
    new: bool
    reason: str


def link_at_signup(session: Session, shop: Shop, shopify_customer_id: int) -> SignUpLink:
    """``customers/create``: give the new customer a link when the referral program is on. Idempotent."""
    if not program_on(session, shop.id):
        return SignUpLink(None, False, "referral program off: no link")
    link, new = create_link(session, shop.id, shopify_customer_id)
    return SignUpLink(link, new, "referral link created" if new else "referral link exists")


def retire(session: Session, link: ReferralLink) -> bool:
    """Retire an active link (``True``); a retired one stays as it is (``False``). The caller commits
    and queues the job that takes it off the customer."""
    retired = session.execute(
        update(ReferralLink).where(ReferralLink.shop_id == link.shop_id, ReferralLink.id == link.id,
                                   ReferralLink.status == "active")
        .values(status="retired", retired_at=utcnow(), synced_at=None, last_error=None)).rowcount
    session.refresh(link)
    return bool(retired)


# --- reading ---------------------------------------------------------------------------------------


def get_link(session: Session, shop_id: int, link_id: int) -> ReferralLink:
    link = session.scalar(select(ReferralLink).where(ReferralLink.shop_id == shop_id, ReferralLink.id == link_id))
    if link is None:
        raise NotFound(f"no referral link {link_id} for this store")
    return link


def find_link(session: Session, shop_id: int, which: str) -> ReferralLink:
    """A link by its token, or a customer's active link by their Shopify id. A token has 22
    characters, a customer id at most 19 digits, so the two never mix up."""
    if looks_like_token(which):
        link = session.scalar(select(ReferralLink).where(ReferralLink.shop_id == shop_id,
                                                         ReferralLink.token == which))
        if link is None:
            raise NotFound(f"no referral link with token {which} for this store")
        return link
    try:
        shopify_id = shopify_customer_id(which)
    except BadRequest:
        raise BadRequest(f"{shown(which)} is neither a link token (22 letters, digits, - or _) nor a Shopify "
                         f"customer id (1 to {SHOPIFY_ID_MAX})") from None
    link = session.scalar(select(ReferralLink).join(Customer, Customer.id == ReferralLink.customer_id)
                          .where(ReferralLink.shop_id == shop_id, Customer.shop_id == shop_id,
                                 Customer.shopify_customer_id == shopify_id, ReferralLink.status == "active"))
    if link is None:
        raise NotFound(f"customer {shopify_id} has no active referral link")
    return link


def list_links(session: Session, shop_id: int, *, status: str | None = None,
               shopify_customer_id: int | None = None, before: int | None = None,
               limit: int = 50) -> list[tuple[ReferralLink, int | None]]:
    """The shop's links, newest first, with their customer's Shopify id (keyset by ``before``)."""
    if status is not None and status not in LINK_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(LINK_STATUSES)}, not {shown(status)}")
    query = (select(ReferralLink, Customer.shopify_customer_id)
             .outerjoin(Customer, Customer.id == ReferralLink.customer_id)
             .where(ReferralLink.shop_id == shop_id).order_by(ReferralLink.id.desc()).limit(limit))
    if status is not None:
        query = query.where(ReferralLink.status == status)
    if shopify_customer_id is not None:
        query = query.where(Customer.shop_id == shop_id, Customer.shopify_customer_id == shopify_customer_id)
    if before is not None:
        query = query.where(ReferralLink.id < before)
    return [(link, shopify_id) for link, shopify_id in session.execute(query).all()]


def customer_shopify_id(session: Session, link: ReferralLink) -> int | None:
    if link.customer_id is None:
        return None
    return session.scalar(select(Customer.shopify_customer_id).where(Customer.shop_id == link.shop_id,
                                                                     Customer.id == link.customer_id))


def link_json(link: ReferralLink, settings: Settings, shopify_id: int | None) -> dict[str, Any]:
    """A link as the API and the CLI show it."""
    def at(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": link.id,
        "token": link.token,
        "url": link_url(settings, link.token),
        "status": link.status,
        "customer_id": shopify_id,
        "created_at": at(link.created_at),
        "retired_at": at(link.retired_at),
        "clicks": link.clicks,
        "last_clicked_at": at(link.last_clicked_at),
        "metafield": metafield_state(link),
        "error": link.last_error,
    }


def metafield_state(link: ReferralLink) -> str:
    """The customer's ``referral_link`` metafield for this link: ``pending`` (the job is on its way),
    ``written`` (active), ``removed`` (retired), or ``failed`` (the store refused, or the job gave up:
    see ``error``)."""
    if link.last_error is not None:
        return "failed"
    if link.synced_at is None:
        return "pending"
    return "written" if link.status == "active" else "removed"


# --- the landing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """What ``/r/{token}`` found: ``active``, ``retired``, ``unknown`` or ``store_closed`` (the shop
    uninstalled OnceCode), and the shop's domain when known."""

    state: str
    shop_domain: str | None = None
    shop_id: int | None = None
    link_id: int | None = None


def land(session: Session, token: str) -> Landing:
    """Look a token up (one query on the unique token index). Counts nothing: a landing's click is
    recorded after its transaction, by ``record_click``. No Admin API call, ever."""
    if not looks_like_token(token):
        return Landing("unknown")
    found = session.execute(
        select(ReferralLink.id, ReferralLink.status, Shop.domain, Shop.uninstalled_at, Shop.access_token.is_(None),
               Shop.id).join(Shop, Shop.id == ReferralLink.shop_id).where(ReferralLink.token == token)).first()
    if found is None:
        return Landing("unknown")
    link_id, status, domain, uninstalled_at, no_token, shop_id = found
    if status != "active":
        return Landing("retired", domain)
    if uninstalled_at is not None or no_token:
        return Landing("store_closed", domain)
    return Landing("active", domain, shop_id, link_id)


@dataclass(frozen=True)
class Click:
    """One opening of an active link, to be counted (``record_click``); ``new_visitor``: a browser new
    to the landing got a code (the metrics' unique visitors)."""

    shop_id: int
    link_id: int
    at: datetime
    new_visitor: bool = False


def record_click(db: Database, click: Click) -> None:
    """Count a click (and a new visitor) on its link: ``clicks``, ``last_clicked_at`` and the link's hour.

    In a transaction of its own, after the landing's has committed, and without waiting for the disk:
    the counters are the link's hottest rows (every landing of a shared link updates them), and held
    through the landing's commit (which waits for the disk when a code is handed out) they made the
    landings of one link wait for each other — 24 landings/s instead of 150 (bench/referral). A
    database crash may lose the last fraction of a second of clicks, never a link, a code or an order.
    """
    with db.session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit = off"))
        session.execute(update(ReferralLink)
                        .where(ReferralLink.id == click.link_id, ReferralLink.shop_id == click.shop_id)
                        .values(clicks=ReferralLink.clicks + 1, last_clicked_at=click.at))
        count_hour(session, click.shop_id, click.link_id, click.at, clicks=1, visitors=int(click.new_visitor))


@cache
def _hour_statement(dialect: str) -> Any:
    """``INSERT INTO referral_click_hours ... ON CONFLICT (link_id, hour) DO UPDATE SET clicks = clicks
    + excluded.clicks, visitors = ...``, built once per dialect (both PostgreSQL and SQLite have it)."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ReferralClickHour)
    return insert.on_conflict_do_update(
        index_elements=["link_id", "hour"],
        set_={"clicks": ReferralClickHour.clicks + insert.excluded.clicks,
              "visitors": ReferralClickHour.visitors + insert.excluded.visitors})


def count_hour(session: Session, shop_id: int, link_id: int, now: datetime, *, clicks: int = 0,
               visitors: int = 0) -> None:
    """Add clicks and new visitors to the link's row for the hour (UTC) of ``now``: one statement,
    atomic under concurrent landings (the row's lock is taken after the link's, in every landing, so
    they cannot deadlock). The caller commits."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    session.execute(_hour_statement(session.get_bind().dialect.name),
                    {"shop_id": shop_id, "link_id": link_id, "hour": hour, "clicks": clicks, "visitors": visitors})


# --- the customer's metafield ---------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerSide:
    """What a customer's metafield should show: their active link's token (or none), and the links
    whose status that reflects, as (id, status) pairs."""

    token: str | None
    links: frozenset[tuple[int, str]]


class LinkWriter:
    """Makes customers' ``referral_link`` metafields agree with their links. One per job."""

    def __init__(self, db: Database, settings: Settings, client: AdminClient, shop_id: int) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self.shop_id = shop_id

    def sync(self, link_id: int) -> str:
        """Write the customer's active link to them, or remove the metafield when they have none.

        Idempotent and order-free: it sets what the rows say, then reads them again, and goes round
        again while a change landed meanwhile. The links it saw are marked synced only if their status
        is still the one it wrote for (compare-and-set), so a retirement that lands during the call
        keeps its own job's work.
        """
        with self.db.session_scope() as session:
            link = session.scalar(select(ReferralLink).where(ReferralLink.shop_id == self.shop_id,
                                                             ReferralLink.id == link_id))
            if link is None:
                return "no such link"
            shopify_id = customer_shopify_id(session, link)
            customer_id = link.customer_id
        if customer_id is None or shopify_id is None:
            self._mark(None, frozenset({(link_id, link.status)}), None)
            return "customer erased: nothing to write"
        owner = attachment.customer_gid(shopify_id)
        side = self._side(customer_id)
        for _ in range(3):
            try:
                self._write(owner, side.token)
            except UserErrors as exc:
                # A refusal (the customer was deleted on the store, say) does not pass by retrying.
                problem = f"the store refused the customer's referral_link metafield: {exc}"[:2000]
                log.warning("referral link not written", extra={"shop_id": self.shop_id, "link_id": link_id,
                                                                "reason": problem})
                self._mark(customer_id, side.links, problem)
                return "refused by the store"
            again = self._side(customer_id)
            if again.token == side.token:
                self._mark(customer_id, side.links | again.links, None)
                return "written" if side.token else "removed"
            side = again
        return "changed while writing; the sweep will finish it"

    def _write(self, owner: str, token: str | None) -> None:
        if token is not None:
            self.client.mutate("metafieldsSet", {"metafields": [
                {"ownerId": owner, "namespace": attachment.NAMESPACE, "key": METAFIELD_KEY, "type": "url",
                 "value": link_url(self.settings, token)}]})
        else:
            self.client.mutate("metafieldsDelete", {"metafields": [
                {"ownerId": owner, "namespace": attachment.NAMESPACE, "key": METAFIELD_KEY}]})

    def _side(self, customer_id: int) -> CustomerSide:
        with self.db.session_scope() as session:
            rows = session.execute(select(ReferralLink.id, ReferralLink.status, ReferralLink.token).where(
                ReferralLink.shop_id == self.shop_id, ReferralLink.customer_id == customer_id,
                ReferralLink.synced_at.is_(None) | (ReferralLink.status == "active"))).all()
        active = [token for _, status, token in rows if status == "active"]
        return CustomerSide(active[0] if active else None, frozenset((i, s) for i, s, _ in rows))

    def _mark(self, customer_id: int | None, links: frozenset[tuple[int, str]], problem: str | None) -> None:
        if not links:
            return
        with self.db.session_scope() as session:
            session.execute(update(ReferralLink).where(
                ReferralLink.shop_id == self.shop_id,
                or_(*(and_(ReferralLink.id == i, ReferralLink.status == s) for i, s in links)))
                .values(synced_at=utcnow(), last_error=problem))


def record_failure(db: Database, shop_id: int, link_id: int, reason: str) -> None:
    """A link whose metafield could not be written or removed, for a reason a person must read. It
    counts as synced (the sweep leaves it), so that only a new change or a retry by hand tries again."""
    with db.session_scope() as session:
        session.execute(update(ReferralLink).where(ReferralLink.shop_id == shop_id, ReferralLink.id == link_id)
                        .values(synced_at=utcnow(), last_error=reason[:2000]))


def stranded(session: Session, limit: int = 500) -> list[tuple[int, int, str]]:
    """(shop id, link id, status) of links of installed shops whose metafield job seems lost: a change
    older than ``STRANDED_AFTER`` not yet reflected on the customer. Oldest first."""
    changed = func.coalesce(ReferralLink.retired_at, ReferralLink.created_at)
    rows = session.execute(
        select(ReferralLink.shop_id, ReferralLink.id, ReferralLink.status).join(Shop, Shop.id == ReferralLink.shop_id)
        .where(ReferralLink.synced_at.is_(None), ReferralLink.customer_id.is_not(None),
               changed < utcnow() - STRANDED_AFTER, Shop.uninstalled_at.is_(None), Shop.access_token.is_not(None))
        .order_by(ReferralLink.id).limit(limit)).all()
    return [(shop_id, link_id, status) for shop_id, link_id, status in rows]


def retire_for_redaction(session: Session, shop_id: int, customer_id: int) -> None:
    """``customers/redact``: the customer's links stop working. Nothing is written to the store
    (Shopify erases the customer itself), so they count as synced."""
    now = utcnow()
    session.execute(update(ReferralLink).where(ReferralLink.shop_id == shop_id,
                                               ReferralLink.customer_id == customer_id,
                                               ReferralLink.status == "active")
                    .values(status="retired", retired_at=now))
    session.execute(update(ReferralLink).where(ReferralLink.shop_id == shop_id,
                                               ReferralLink.customer_id == customer_id)
                    .values(synced_at=now, last_error=None))
