"""Per-address limits on the public pages (Flask-Limiter on the app's real Redis), and what they never touch."""

from __future__ import annotations

import json
import re

import pytest

from app.ratelimit import NOT_LIMITED_BY_ADDRESS
from tests.helpers import make_shop, post_webhook

SHOP = "demo.myshopify.com"


def statuses(client, path: str, count: int, **kwargs) -> list[int]:  # type: ignore[no-untyped-def]
    return [client.get(path, **kwargs).status_code for _ in range(count)]


def test_public_pages_share_one_budget_per_address_then_429_with_retry_after(app_factory):
    client = app_factory(public_rate_limit="4 per minute").test_client()
    assert client.get("/").status_code == 200
    assert client.get("/auth", query_string={"shop": SHOP}).status_code == 302
    assert client.get("/auth/callback").status_code == 400  # counted although refused
    assert client.get("/").status_code == 200

    refused = client.get("/auth", query_string={"shop": SHOP})
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.content_type.startswith("text/plain")
    assert "too many requests from your address (limit: 4 per 1 minute)" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 429 and client.get("/auth/callback").status_code == 429


def test_the_count_is_kept_in_the_apps_redis(app_factory):
    app = app_factory(public_rate_limit="4 per minute")
    app.test_client().get("/")
    redis = app.extensions["oncecode"].redis
    assert any(b"oncecode" in key for key in redis.keys("LIMITS*"))


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app_factory):
    client = app_factory(public_rate_limit="3 per minute", trusted_proxy_hops=0).test_client()
    got = [client.get("/", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(4)]
    assert got == [200, 200, 200, 429]  # one peer, whatever it claims


def test_x_forwarded_for_counts_with_one_trusted_proxy_but_only_the_hop_it_added(app_factory):
    client = app_factory(public_rate_limit="3 per minute", trusted_proxy_hops=1).test_client()
    # Our proxy appends the address it saw; whatever the client put in front of it is not believed.
    spoofed = [client.get("/", headers={"X-Forwarded-For": f"10.0.0.{n}, 198.51.100.7"}).status_code
               for n in range(4)]
    assert spoofed == [200, 200, 200, 429]
    assert client.get("/", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 200  # another client


@pytest.mark.parametrize("path", ["/healthz", "/api/programs"])
def test_health_and_the_api_are_not_limited_by_address(app_factory, path):
    client = app_factory(public_rate_limit="1 per minute").test_client()
    assert 429 not in statuses(client, path, 5)


def test_webhooks_are_never_limited_by_address(app_factory):
    app = app_factory(public_rate_limit="1 per minute")
    rt = app.extensions["oncecode"]
    with rt.db.session_scope() as session:
        make_shop(session, rt.cipher, domain=SHOP)
    client = app.test_client()
    answers = [post_webhook(client, "customers/create", SHOP, {"id": n + 1}).status_code for n in range(6)]
    assert answers == [200] * 6
    assert "webhooks" in NOT_LIMITED_BY_ADDRESS


def test_redis_down_counts_in_memory_and_never_answers_500(app_factory):
    client = app_factory(redis_url="redis://127.0.0.1:1/0", public_rate_limit="2 per minute").test_client()
    assert statuses(client, "/", 3) == [200, 200, 429]
    health = client.get("/healthz")
    assert health.status_code == 503 and json.loads(health.data)["redis"].startswith("unreachable")


def _routes(app):  # type: ignore[no-untyped-def]
    """(blueprint, method, path) for every route of the app, its variables filled with a plain value."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":  # Flask-Limiter never counts static files
            continue
        method = sorted((rule.methods or {"GET"}) - {"HEAD", "OPTIONS"})[0]
        yield rule.endpoint.split(".", 1)[0], method, re.sub(r"<[^>]+>", "1", rule.rule)


def test_every_route_is_limited_unless_its_blueprint_is_exempted_with_a_reason(app_factory):
    """A public page added later is limited without anyone remembering to, and an exemption made
    anywhere but NOT_LIMITED_BY_ADDRESS (a stray ``@limiter.exempt``) fails here."""
    client = app_factory(public_rate_limit="1 per minute").test_client()
    limited, exempt = [], []
    for n, (blueprint, method, path) in enumerate(_routes(client.application)):
        address = {"REMOTE_ADDR": f"203.0.113.{n % 250 + 1}"}  # a budget of its own for each route
        answers = [client.open(path, method=method, environ_base=address).status_code for _ in range(3)]
        if blueprint in NOT_LIMITED_BY_ADDRESS:
            assert 429 not in answers, (method, path, answers)
            exempt.append(path)
        else:
            assert answers[1:] == [429, 429], (method, path, answers)
            limited.append(path)
    assert {"/", "/auth", "/auth/callback", "/r/1"} <= set(limited)
    assert {"/webhooks", "/healthz", "/proxy", "/api/programs", "/admin/"} <= set(exempt)
