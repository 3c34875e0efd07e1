"""One job per webhook topic, named after it. Each takes the inbox event id.

Running any of them twice is safe: ``run_event`` skips an event already handled, and each domain
function is idempotent on its own (unique keys, deletes of what is already gone).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app import lifecycle
from app.codes import fingerprints, order_changes, reconciliation, referrals, welcome
from app.db import after_commit
from app.models import Shop, WebhookEvent
from app.queues import enqueue_issuance, enqueue_referral_link
from app.runtime import Runtime
from workers.events import run_event


def _installed_shop(session: Session, event: WebhookEvent) -> Shop | None:
    """The event's shop if it has the app installed; otherwise None, and the event is ``ignored``."""
    shop = lifecycle.shop_by_domain(session, event.shop_domain)
    if shop is None or not shop.is_installed:
        event.status = "ignored"
        return None
    return shop


def handle_app_uninstalled(event_id: str) -> str:
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        return lifecycle.uninstall(session, rt.redis, event.shop_domain, event.triggered_at)

    return run_event(event_id, handle)


def handle_customers_create(event_id: str) -> str:
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        shop = _installed_shop(session, event)
        if shop is None:
            return "shop not installed"
        signup = welcome.customer_signed_up(session, shop, int(payload["id"]))
        fingerprints.remember_email(session, shop.id, int(payload["id"]), rt.settings.email_hash_key,
                                    payload.get("email"))
        code = signup.code
        shop_id = shop.id
        if code is not None and code.status in ("reserved", "created"):
            after_commit(session, lambda: enqueue_issuance(rt.redis, shop_id))
        link = referrals.link_at_signup(session, shop, int(payload["id"]))
        if link.link is not None and link.link.synced_at is None:
            link_id, status = link.link.id, link.link.status
            after_commit(session, lambda: enqueue_referral_link(rt.redis, shop_id, link_id, status))
        return f"{'new' if signup.new_customer else 'known'} customer; {signup.reason}; {link.reason}"

    return run_event(event_id, handle)


def handle_orders_paid(event_id: str) -> str:
    """Record the paid order and redeem the codes of ours it used (``app.codes.reconciliation``)."""
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        shop = _installed_shop(session, event)
        if shop is None:  # nothing is lost: after a reinstall, catch-up reads the orders from where it stopped
            return "shop not installed"
        order = reconciliation.PaidOrderFacts.from_webhook(payload, rt.settings.email_hash_key)
        if not order.paid:
            event.status = "ignored"
            return "order not paid"
        reconciled = reconciliation.reconcile(session, shop.id, order, "webhook")
        summary = reconciled.summary()
        shop_id = shop.id
        if reconciled.reward_reserved:  # no hold: the advocate's reward goes out now
            after_commit(session, lambda: enqueue_issuance(rt.redis, shop_id))
        customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
        if customer.get("id") is not None:  # the buyer's email fingerprint, for the self-referral check
            fingerprints.remember_email(session, shop.id, int(customer["id"]), rt.settings.email_hash_key,
                                        customer.get("email") or payload.get("email"))
        # A paid order can already carry refunds (or arrive after its cancellation, if replayed late).
        changes = order_changes.OrderChanges.from_webhook(payload)
        if changes.cancelled_at is not None or changes.refunds:
            summary += "; " + order_changes.record_changes(session, shop.id, changes).summary()
        return summary

    return run_event(event_id, handle)


def handle_orders_cancelled(event_id: str) -> str:
    """Record the order's cancellation and the refunds it lists (``app.codes.order_changes``), once each,
    whether or not its ``orders/paid`` has come yet."""
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        shop = _installed_shop(session, event)
        if shop is None:
            return "shop not installed"
        changes = order_changes.OrderChanges.from_webhook(payload)
        if changes.cancelled_at is None:
            raise reconciliation.InvalidOrder("orders/cancelled without cancelled_at")
        return order_changes.record_changes(session, shop.id, changes).summary()

    return run_event(event_id, handle)


def handle_refunds_create(event_id: str) -> str:
    """Record the refund once per refund id (``app.codes.order_changes``), whether or not its order's
    ``orders/paid`` has come yet."""
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        shop = _installed_shop(session, event)
        if shop is None:
            return "shop not installed"
        refund = order_changes.RefundFacts.from_webhook(payload)
        return order_changes.record_refund(session, shop.id, refund).summary()

    return run_event(event_id, handle)


def handle_customers_data_request(event_id: str) -> str:
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        shop = lifecycle.shop_by_domain(session, event.shop_domain)
        if shop is None:
            return "shop data already erased: nothing held"
        lifecycle.data_requested(session, shop, payload)
        return "data request stored"

    return run_event(event_id, handle)


def handle_customers_redact(event_id: str) -> str:
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        shop = lifecycle.shop_by_domain(session, event.shop_domain)
        if shop is None:
            return "shop data already erased"
        lifecycle.redact_customer(session, shop, payload, current_event_id=event.event_id)
        return "customer redacted"

    return run_event(event_id, handle)


def handle_shop_redact(event_id: str) -> str:
    """Erase the shop's data, unless it has the app installed again: checked here, when it runs, since
    the shop may have reinstalled between the delivery and now."""
    def handle(session: Session, rt: Runtime, event: WebhookEvent, payload: dict[str, Any]) -> str:
        outcome = lifecycle.redact_shop(session, event.shop_domain, keep_event_id=event.event_id)
        if outcome == lifecycle.SHOP_STILL_INSTALLED:
            event.status, event.last_error = "ignored", outcome
        return outcome

    return run_event(event_id, handle)
