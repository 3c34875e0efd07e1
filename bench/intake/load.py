"""A small closed-loop load generator: N threads, one HTTP connection each, signed webhook requests.

Every thread sends a request, waits for the whole response, records its latency and sends the next,
until the deadline; a request already sent when the deadline passes is finished, not abandoned, so
the server never records a delivery the client did not count. Both targets get exactly the same
requests (same body, same headers, a fresh event id each), built by ``WebhookRequests``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import math
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

SHOP = "bench.myshopify.com"
TOPIC = "customers/create"
API_VERSION = "2026-10"
REQUEST_TIMEOUT = 10.0  # seconds; a request slower than this counts as an error
THREAD_JOIN_SLACK = REQUEST_TIMEOUT + 5.0

# Shaped like Shopify's customers/create payload (made-up data), about 1.5 KB as Shopify sends it.
CUSTOMER = {
    "id": 706405506930370084, "email": "bob.norman@example.com", "created_at": "2026-01-15T10:12:33-05:00",
    "updated_at": "2026-01-15T10:12:33-05:00", "first_name": "Bob", "last_name": "Norman", "orders_count": 0,
    "state": "disabled", "total_spent": "0.00", "last_order_id": None, "note": "This customer was created "
    "from the storefront sign-up form.", "verified_email": True, "multipass_identifier": None,
    "tax_exempt": False, "tags": "newsletter, welcome", "last_order_name": None, "currency": "USD",
    "phone": None, "addresses": [{
        "id": 1053317287, "customer_id": 706405506930370084, "first_name": "Bob", "last_name": "Norman",
        "company": None, "address1": "Chestnut Street 92", "address2": "", "city": "Louisville",
        "province": "Kentucky", "country": "United States", "zip": "40202", "phone": "555-625-1199",
        "name": "Bob Norman", "province_code": "KY", "country_code": "US", "country_name": "United States",
        "default": True}],
    "tax_exemptions": [], "email_marketing_consent": {
        "state": "subscribed", "opt_in_level": "confirmed_opt_in", "consent_updated_at": "2026-01-15T10:12:33-05:00"},
    "sms_marketing_consent": None, "admin_graphql_api_id": "gid://shopify/Customer/706405506930370084",
    "default_address": {
        "id": 1053317287, "customer_id": 706405506930370084, "first_name": "Bob", "last_name": "Norman",
        "company": None, "address1": "Chestnut Street 92", "address2": "", "city": "Louisville",
        "province": "Kentucky", "country": "United States", "zip": "40202", "phone": "555-625-1199",
        "name": "Bob Norman", "province_code": "KY", "country_code": "US", "country_name": "United States",
        "default": True},
}


class WebhookRequests:
    """The one request both targets receive: a constant body, signed once, with fresh ids per call."""

    def __init__(self, secret: str, shop: str = SHOP, topic: str = TOPIC) -> None:
        self.body = json.dumps(CUSTOMER).encode()
        # Shopify's algorithm, computed here rather than with the app's helper: base64(HMAC-SHA256(raw body)).
        self.signature = base64.b64encode(hmac.new(secret.encode(), self.body, hashlib.sha256).digest()).decode()
        self.shop = shop
        self.topic = topic

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": self.topic,
            "X-Shopify-Shop-Domain": self.shop,
            "X-Shopify-Hmac-Sha256": self.signature,
            "X-Shopify-API-Version": API_VERSION,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": str(uuid.uuid4()),  # unique, so the inbox never sees a duplicate
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }


@dataclass
class LoadResult:
    target: str
    elapsed: float  # seconds from the first request sent to the last response read
    latencies: list[float] = field(default_factory=list)  # seconds, one per response read (any status)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0  # connection errors and timeouts: no response at all
    client_cpu: float = 0.0  # CPU seconds this process (the load generator) used meanwhile
    server_cpu: float = math.nan  # CPU seconds the server's processes used meanwhile (set by the caller)

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.failures

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors(self) -> int:
        return self.requests - self.ok

    @property
    def rate(self) -> float:
        """Successful (200) responses per second."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds (NaN when nothing was measured)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

    def cpu_ms_per_request(self, seconds: float) -> float:
        return seconds / self.requests * 1000 if self.requests else math.nan

    def summary(self) -> dict[str, object]:
        return {
            "requests": self.requests, "ok": self.ok, "errors": self.errors, "failures": self.failures,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "elapsed_s": figure(self.elapsed, 3), "req_per_s": figure(self.rate, 1),
            "p50_ms": figure(self.percentile_ms(50), 2), "p90_ms": figure(self.percentile_ms(90), 2),
            "p99_ms": figure(self.percentile_ms(99), 2), "max_ms": figure(self.percentile_ms(100), 2),
            "client_cpu_s": figure(self.client_cpu, 3), "server_cpu_s": figure(self.server_cpu, 3),
            "server_cpu_ms_per_request": figure(self.cpu_ms_per_request(self.server_cpu), 3),
            "client_cpu_ms_per_request": figure(self.cpu_ms_per_request(self.client_cpu), 3),
        }


def figure(value: float, digits: int) -> float | None:
    """Rounded for the JSON report; None for NaN, which JSON cannot hold."""
    return None if math.isnan(value) else round(value, digits)


def _client(port: int, requests: WebhookRequests, deadline: float, stop: threading.Event,
            result: LoadResult, lock: threading.Lock) -> None:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures = 0
    # http.client reconnects by itself when the server closes the connection after a response
    # (gunicorn's sync workers do, every time), so the same loop serves keep-alive and close.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        while not stop.is_set() and time.perf_counter() < deadline:
            headers = requests.headers()
            started = time.perf_counter()
            try:
                connection.request("POST", "/webhooks", body=requests.body, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                failures += 1
                connection.close()
                time.sleep(0.01)  # a dead server refuses at once: do not spin
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
    finally:
        connection.close()
        with lock:
            result.latencies.extend(latencies)
            result.statuses.update(statuses)
            result.failures += failures


def run_load(target: str, port: int, requests: WebhookRequests, seconds: float, connections: int) -> LoadResult:
    """Drive ``POST /webhooks`` on 127.0.0.1:``port`` from ``connections`` threads for ``seconds``."""
    result = LoadResult(target=target, elapsed=0.0)
    stop, lock = threading.Event(), threading.Lock()
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + seconds
    threads = [threading.Thread(target=_client, args=(port, requests, deadline, stop, result, lock),
                                name=f"load-{target}-{i}", daemon=True) for i in range(connections)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(0.0, deadline + THREAD_JOIN_SLACK - time.perf_counter()))
    finally:
        stop.set()  # on Ctrl-C, or a thread stuck past its timeout: let the others wind down
    result.elapsed = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu_started
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        raise RuntimeError(f"{stuck} load threads for {target} did not finish within their timeout")
    return result
