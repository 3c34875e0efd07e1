"""Test data factories and request signers, computed independently of the app's own helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Program, Shop
from app.queues import topics_key
from app.shopify.oauth import TokenGrant
from app.shopify.tokens import TokenCipher, store_grant
from tests.conftest import API_SECRET


def webhook_signature(body: bytes, secret: str = API_SECRET) -> str:
    """Shopify's documented algorithm: base64(HMAC-SHA256(secret, raw body))."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def query_signature(params: dict[str, str], secret: str = API_SECRET) -> str:
    """Shopify's OAuth algorithm: hex HMAC-SHA256 over the sorted k=v pairs joined by '&' (hmac removed)."""
    message = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def webhook_headers(topic: str, shop: str, body: bytes, event_id: str | None = None,
                    **extra: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": webhook_signature(body),
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": utcnow().isoformat(),
    }
    headers.update(extra)
    return headers


def post_webhook(client, topic: str, shop: str, payload: Any, event_id: str | None = None,  # type: ignore[no-untyped-def]
                 **extra: str):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/webhooks", data=body, headers=webhook_headers(topic, shop, body, event_id, **extra))


def make_shop(session: Session, cipher: TokenCipher, domain: str = "demo.myshopify.com",
              access_token: str = "shpat_test_access", expires_in: timedelta | None = timedelta(hours=1),
              refresh_token: str | None = "shprt_test_refresh", installed: bool = True,
              set_up: bool = True) -> Shop:
    now = utcnow()
    shop = Shop(domain=domain, api_version="2026-10", settings={})
    store_grant(shop, TokenGrant(access_token=access_token, scopes=("read_customers", "write_discounts"),
                                 expires_at=now + expires_in if expires_in is not None else None,
                                 refresh_token=refresh_token,
                                 refresh_token_expires_at=now + timedelta(days=90) if refresh_token else None),
                cipher)
    shop.installed_at = now - timedelta(minutes=10)
    shop.setup_completed_at = shop.installed_at if set_up else None
    shop.webhook_topics = topics_key() if set_up else None  # set up by this release: every topic subscribed
    if not installed:
        shop.uninstalled_at = now
        shop.access_token = shop.refresh_token = None
    session.add(shop)
    session.commit()
    return shop


def session_token(shop: str, secret: str = API_SECRET, audience: str | None = None, **claims: Any) -> str:
    """An App Bridge session token as Shopify signs it (HS256 with the app secret)."""
    import time

    import jwt

    from tests.conftest import API_KEY

    now = int(time.time())
    body = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": audience or API_KEY,
            "sub": "42", "exp": now + 60, "nbf": now - 1, "iat": now - 1, "jti": str(uuid.uuid4()),
            "sid": str(uuid.uuid4())}
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256")


def make_shop_with_programs(session: Session, cipher: TokenCipher, domain: str = "demo.myshopify.com") -> Shop:
    """An installed shop with the default programs created at install."""
    from app import lifecycle

    shop = make_shop(session, cipher, domain=domain)
    lifecycle.create_default_programs(session, shop.id)
    session.commit()
    return shop


def program_of(session: Session, shop: Shop, kind: str = "welcome") -> Program:
    """The shop's program of ``kind``, freshly read."""
    from sqlalchemy import select

    session.expire_all()
    return session.scalars(select(Program).where(Program.shop_id == shop.id, Program.kind == kind)).one()


def order_payload(order_id: int, codes: list[tuple[str, str]] = (), total: str = "100.00",  # type: ignore[assignment]
                  subtotal: str | None = None, currency: str = "USD", presentment: str | None = None,
                  rate: str = "1", processed_at: str = "2026-11-20T10:00:00-05:00", customer_id: int | None = 42,
                  financial_status: str = "paid") -> dict[str, Any]:
    """An ``orders/paid`` body shaped like Shopify's (the Order resource), with ``codes`` as
    ``(code, amount in shop currency)``. ``presentment``/``rate``: the buyer paid in another currency."""
    from decimal import Decimal

    shown = presentment or currency

    def money(amount: str | Decimal) -> dict[str, Any]:
        value = Decimal(amount)
        return {"shop_money": {"amount": f"{value:.2f}", "currency_code": currency},
                "presentment_money": {"amount": f"{value * Decimal(rate):.2f}", "currency_code": shown}}

    discounts = sum((Decimal(amount) for _, amount in codes), Decimal(0))
    subtotal = subtotal or f"{Decimal(total) - Decimal('5.00'):.2f}"
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}", "name": f"#{order_id % 100000}",
        "currency": currency, "presentment_currency": shown, "financial_status": financial_status,
        "processed_at": processed_at, "created_at": processed_at, "updated_at": processed_at,
        # Top-level amounts are in the presentment currency here, as Shopify renders them for the buyer:
        # the app must read the shop_money side.
        "total_price": f"{Decimal(total) * Decimal(rate):.2f}", "total_price_set": money(total),
        "subtotal_price": f"{Decimal(subtotal) * Decimal(rate):.2f}", "subtotal_price_set": money(subtotal),
        "total_discounts": f"{discounts * Decimal(rate):.2f}", "total_discounts_set": money(discounts),
        "discount_codes": [{"code": code, "amount": f"{Decimal(amount) * Decimal(rate):.2f}", "type": "percentage"}
                           for code, amount in codes],
        "discount_applications": [{"target_type": "line_item", "type": "discount_code", "value": "10.0",
                                   "value_type": "percentage", "allocation_method": "across",
                                   "target_selection": "all", "code": code} for code, _ in codes],
        "line_items": [{"id": order_id * 10 + 1, "title": "Item", "price": total, "quantity": 1,
                        "discount_allocations": [
                            {"amount": f"{Decimal(amount) * Decimal(rate):.2f}", "amount_set": money(amount),
                             "discount_application_index": index} for index, (_, amount) in enumerate(codes)]}],
        "shipping_lines": [],
        "customer": {"id": customer_id, "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}"}
        if customer_id else None,
    }


def issued_code(session: Session, shop: Shop, code: str, kind: str = "welcome", status: str = "attached",
                issued_at: Any = None, expires_at: Any = None, customer_id: int | None = None) -> Any:
    """A code as issuance leaves it (created on the store, attached), written directly for reconciliation tests."""
    from app.codes.issuance import terms_of
    from app.models import IssuedCode

    program = program_of(session, shop, kind)
    row = IssuedCode(shop_id=shop.id, program_id=program.id, customer_id=customer_id, code=code.upper(),
                     idempotency_key=f"test:{shop.id}:{code.upper()}", status=status, terms=terms_of(program),
                     discount_gid=f"gid://shopify/DiscountCodeNode/{abs(hash(code)) % 10**9}",
                     issued_at=issued_at or utcnow() - timedelta(days=1), expires_at=expires_at)
    session.add(row)
    session.commit()
    return row


def take_and_die(redis: Any, queue: str = "default", lease: int = 1) -> Any:
    """Take the next job of ``queue`` exactly as a worker starts it, then leave it: a worker killed mid-job.

    Returns the worker (its key, like the job's lease, lapses ``lease`` seconds later) and the job.
    """
    from rq import Queue

    from app import leases
    from workers.worker import Worker

    worker = Worker([queue], connection=redis, lease_seconds=lease)
    worker.register_birth()
    job, _ = Queue.dequeue_any([Queue(queue, connection=redis)], None, connection=redis)
    assert leases.claim_run(redis, job.id, worker.name, lease)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    return worker, job
