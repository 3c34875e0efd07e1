"""Asynchronous jobs: what a bulk mutation starts and ``job(id:)`` reports.

Shopify answers a bulk mutation (``discountCodeBulkDelete``) at once with a ``Job {id done}`` and does
the work in the background; the client polls ``job(id:)`` until ``done`` is true. devstore does the
same: the mutation records the job and the moment it runs (``DevstoreConfig.job_seconds`` later), and
whatever opens the store's state next (an Admin API call, the control API, a page, a checkout) first
runs the jobs that are due (``run_due``, a ``State.on_session`` hook). So the work happens a moment
after the mutation, whoever looks, and nobody ever sees it half done. Job ids are UUIDs, as in the
``gid://shopify/Job/<uuid>`` ids Shopify returns.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from graphql import GraphQLError
from sqlalchemy import select
from sqlalchemy.orm import Session

from devstore.admin.context import Context
from devstore.admin.objects import Plain
from devstore.admin.views import Info
from devstore.models import Job, now
from devstore.web import current_state

JOB_GID_RE = re.compile(r"^gid://shopify/Job/(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
ANY_GID_RE = re.compile(r"^gid://shopify/[A-Za-z]+/[^/\s]+$")

Runner = Callable[[Session, Job], None]

# Work that runs like a job but that Shopify reports through an object of its own, never as a ``Job``:
# a ``discountRedeemCodeBulkAdd`` is followed through its ``DiscountRedeemCodeBulkCreation``.
INTERNAL_KINDS = frozenset({"discountRedeemCodeBulkAdd"})


def start(ctx: Context, kind: str, targets: list[int], parent_id: int | None = None) -> Job:
    """Record a job of ``kind`` over ``targets`` (within ``parent_id``), to run ``job_seconds`` from now."""
    delay = current_state().config.job_seconds
    job = Job(id=str(uuid.uuid4()), shop=ctx.shop, kind=kind, targets=targets, parent_id=parent_id,
              created_at=ctx.now, run_at=ctx.now + timedelta(seconds=delay))
    ctx.session.add(job)
    ctx.session.flush()
    return job


def run_due(session: Session, runners: Mapping[str, Runner]) -> int:
    """Run every job whose moment has come, oldest first, and mark it done; how many ran."""
    moment = now()
    due = session.scalars(select(Job).where(Job.done_at.is_(None), Job.run_at <= moment).order_by(Job.run_at)).all()
    for job in due:
        runners[job.kind](session, job)
        job.done_at = moment
    if due:
        session.flush()
    return len(due)


def job_gid(job: Job) -> str:
    return f"gid://shopify/Job/{job.id}"


def job_view(job: Job) -> Plain:
    return Plain("Job", id=job_gid(job), done=job.done_at is not None)


def job(root: Any, info: Info, id: str) -> Plain | None:
    """``job(id:)``: this store's job, or null (unknown, another store's, or not a job id at all)."""
    ctx: Context = info.context
    match = JOB_GID_RE.match(id or "")
    if match is None:
        if ANY_GID_RE.match(id or "") is None:
            raise GraphQLError(f"Invalid global id '{id}'", extensions={"code": "INVALID_GLOBAL_ID"})
        return None
    row = ctx.session.get(Job, match["id"])
    if row is None or row.shop != ctx.shop or row.kind in INTERNAL_KINDS:
        return None
    return job_view(row)
