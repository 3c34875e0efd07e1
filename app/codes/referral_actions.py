"""What a merchant does to the referral program, from any door (the JSON API, the admin pages): the
change recorded and committed, then the job that carries it to the store queued. One place, so that
the API and the pages cannot drift apart on what follows creating or retiring a link, or a top-up.

Each is safe to repeat: the domain functions are idempotent (``referrals.create_link`` finds the
customer's active link, ``referrals.retire`` leaves a retired link as it is) and the queue helpers keep
one job id per purpose (``app.queues``), so a double click queues one job.
"""

from __future__ import annotations

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.codes import referrals
from app.errors import Conflict, NotFound
from app.models import Program, ReferralLink
from app.queues import enqueue_pool_top_up, enqueue_referral_link

FRIEND_KIND = "referral_friend"  # the program whose pool hands out friend codes


def create_link(session: Session, redis: Redis, shop_id: int, shopify_customer_id: int) -> tuple[ReferralLink, bool]:
    """``referrals.create_link``, committed; the metafield job queued while the customer does not show
    the link yet. ``False`` when the customer had an active link already (it is the one answered)."""
    link, new = referrals.create_link(session, shop_id, shopify_customer_id)
    session.commit()
    if link.synced_at is None:
        enqueue_referral_link(redis, shop_id, link.id, link.status)
    return link, new


def retire_link(session: Session, redis: Redis, shop_id: int, link_id: int) -> tuple[ReferralLink, bool]:
    """``referrals.retire``, committed; the job that takes it off the customer queued while not done.
    ``False`` when the link was retired already. ``NotFound`` for another shop's link, as for none."""
    link = referrals.get_link(session, shop_id, link_id)
    retired = referrals.retire(session, link)
    session.commit()
    if link.synced_at is None:
        enqueue_referral_link(redis, shop_id, link.id, link.status)
    return link, retired


def friend_program(session: Session, shop_id: int) -> Program:
    """The shop's ``referral_friend`` program (whose pool hands out friend codes); ``NotFound`` if none."""
    program = session.scalars(select(Program).where(Program.shop_id == shop_id, Program.kind == FRIEND_KIND)).first()
    if program is None:
        raise NotFound(f"this store has no {FRIEND_KIND} program")
    return program


def top_up_pool(session: Session, redis: Redis, shop_id: int) -> bool:
    """Queue the friend code pool's top-up now; ``True`` if queued, ``False`` when one is queued or
    running already. ``Conflict`` while the program is off (its pool is not kept then)."""
    program = friend_program(session, shop_id)
    if not program.active:
        raise Conflict(f"the {FRIEND_KIND} program is off; switch it on first")
    return enqueue_pool_top_up(redis, shop_id, program.id)
