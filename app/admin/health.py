"""The Health page: what needs attention (``attention``, as on Home), the codes that could not be issued
with their reasons and a Retry each (``issuance.request_retry`` and the issuing job, as the API), webhook
deliveries of the last day, catch-up reconciliation with "Reconcile now" (``health.reconcile_now``, as
the API), the Admin API bucket as last seen, the token's life, the codes on the store against Shopify's
cap, and the set-up."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from redis.exceptions import RedisError

from app.admin import auth
from app.admin.referrals import _clock
from app.admin.routes import bp, done, installed_shop, notice, render_page
from app.codes import attention, code_actions, health, issuance, metrics
from app.errors import BadRequest, Conflict, NotFound
from app.models import Shop
from app.params import parse_id
from app.web import db_session, rt

PAGE = 25  # failed codes per page

RETRIED = notice("health-retried", "The code is on its way to your store again.")
RECONCILE_QUEUED = notice("reconcile-queued", "Checking your paid orders now: redemptions show up in a minute or two.")
RECONCILE_RUNNING = notice("reconcile-running", "Your paid orders are being checked already: nothing more to do.")


def _page(shop: Shop, problem: dict[str, Any] | None = None, status_code: int = 200):  # type: ignore[no-untyped-def]
    session, redis = db_session(), rt().redis
    errors: dict[str, str] = {}
    raw = request.args.get("before", "").strip()
    before = None
    if raw:
        try:
            before = parse_id(raw, "before")
        except BadRequest as exc:
            errors["before"] = str(exc)
    failed = [] if errors else issuance.list_codes(session, shop.id, status="failed", before=before, limit=PAGE + 1)
    older = failed[PAGE - 1][0].id if len(failed) > PAGE else None
    store = metrics.store_usage(session, shop.id, rt().redis)
    page = render_page(
        "admin/health.html", shop, when=_clock(shop), errors=errors, problem=problem or {},
        attention=attention.attention(session, shop, {"totals": {}, "store": store}),
        failed=failed[:PAGE], failed_count=attention.failed_codes(session, shop.id),
        older=url_for("admin.health", **auth.carried(), before=older) if older else None,
        newest=url_for("admin.health", **auth.carried()) if before else None,
        webhooks=health.webhook_deliveries(session, shop.domain),
        catch_up=health.catch_up_status(session, redis, shop.id),
        bucket=health.admin_bucket(redis, shop.domain), tokens=health.token_life(shop), store=store,
        warn_share=metrics.CAP_WARNING_SHARE)
    return page, 400 if errors else status_code


@bp.get("/health", endpoint="health")  # the function's name would hide app.codes.health
def health_page():  # type: ignore[no-untyped-def]
    return _page(installed_shop())


@bp.post("/health/codes/<id:code_id>/retry")
def health_retry(code_id: int):  # type: ignore[no-untyped-def]
    """Issue a failed code again. Sent twice, the second finds it on its way and does nothing more."""
    shop = installed_shop()
    try:
        code_actions.retry(db_session(), rt().redis, shop.id, code_id, again_ok=True)
    except NotFound:
        return render_page("admin/health_missing.html", shop), 404
    except Conflict as exc:
        return _page(shop, {"code_id": code_id, "text": str(exc)}, 409)
    return done("admin.health", RETRIED)


@bp.post("/health/reconcile")
def health_reconcile():  # type: ignore[no-untyped-def]
    """Check the store's paid orders now (catch-up): queued once, however many clicks."""
    shop = installed_shop()
    try:
        queued = health.reconcile_now(db_session(), rt().redis, shop)
    except RedisError:
        return _page(shop, {"reconcile": "The job queue is unavailable just now; try again in a moment."}, 503)
    return done("admin.health", RECONCILE_QUEUED if queued else RECONCILE_RUNNING)
