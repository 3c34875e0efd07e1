"""The Admin client against devstore's real leaky bucket, over HTTP on loopback: paced, never failing."""

from __future__ import annotations

import time

import requests
from sqlalchemy import select

from app.models import Shop
from app.shopify.client import AdminClient
from app.shopify.throttle import ShopBuckets
from devstore.models import WebhookSubscription as StoreSubscription
from tests.e2e.harness import SHOP, World, install

CALLS = 30
FIRST = 5  # each query requests 2 + 5 = 7 points and, with 5 subscriptions on the store, spends them all


def test_a_burst_of_queries_on_a_small_bucket_all_succeed(world: World):
    rt = world.app.extensions["oncecode"]
    install(world)
    world.control("PUT", "/plan", json={"bucket_size": 100, "restore_rate": 50})
    with world.store.extensions["devstore"].session() as session:
        for n in range(FIRST):
            session.add(StoreSubscription(id=n + 1, shop=SHOP, topic="CUSTOMERS_CREATE", uri=f"https://sink{n}.test/webhooks"))
    with rt.db.session_scope() as session:
        token = rt.cipher.decrypt(session.scalars(select(Shop)).one().access_token)

    throttled_answers = []

    def count_throttled(response: requests.Response, *args: object, **kwargs: object) -> None:
        if "THROTTLED" in response.text:
            throttled_answers.append(response.json()["extensions"]["cost"])

    http = requests.Session()
    http.hooks["response"].append(count_throttled)
    # One client for every call, allowed to wait as long as the burst needs (a job's client is not).
    client = AdminClient(rt.settings, SHOP, token, session=http, bucket=ShopBuckets(rt.redis), wait_budget=30)

    started = time.monotonic()
    for _ in range(CALLS):  # any Throttled raised here fails the test
        data = client.query("webhookSubscriptions", {"first": FIRST})
        assert len(data["webhookSubscriptions"]["nodes"]) == FIRST
    elapsed = time.monotonic() - started

    assert client.last_cost["actualQueryCost"] == 2 + FIRST
    # 30 × 7 = 210 points through a 100-point bucket restoring 50/s: the calls had to be paced.
    assert elapsed >= (CALLS * (2 + FIRST) - 100) / 50 * 0.8
    # The mirror learned the bucket from the first answer, so the store hardly ever had to refuse.
    assert len(throttled_answers) <= 1, throttled_answers  # without the mirror: about 15 of 30
