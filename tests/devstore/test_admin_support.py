"""Shared pieces of the Admin GraphQL tests (no tests here): a devstore with the app installed, a clock.

The other ``test_admin_*`` modules import the fixtures below. devstore keeps its state in memory,
so these tests need neither PostgreSQL nor Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from devstore import create_app
from devstore.checkout import create_customer, place_order
from devstore.models import Installation, Store
from devstore.state import DevstoreConfig, State

SHOP = "demo.myshopify.com"
OTHER_SHOP = "other.myshopify.com"
CLIENT_ID = "k"
TOKEN = "shpat_devstore_admin_test"
SCOPES = "read_customers,write_customers,read_orders,read_discounts,write_discounts"
VERSION = "2026-10"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def install(state: State, shop: str = SHOP, *, token: str = TOKEN, scopes: str = SCOPES, **columns: Any) -> None:
    """The app's installation on ``shop``, as OAuth would leave it."""
    with state.session() as session:
        session.add(Installation(shop=shop, client_id=CLIENT_ID, scopes=scopes, access_token=token, **columns))


def set_store(state: State, shop: str = SHOP, **columns: Any) -> None:
    """Change a store's plan figures or faults directly."""
    with state.session() as session:
        store = session.get(Store, shop)
        assert store is not None
        for name, value in columns.items():
            setattr(store, name, value)


@dataclass
class AdminApi:
    """Posts documents to one store's Admin GraphQL endpoint through Flask's test client."""

    app: Flask
    http: FlaskClient
    state: State
    clock: FakeClock

    def post(self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = TOKEN,
             version: str = VERSION, shop: str = SHOP) -> TestResponse:
        headers = {} if token is None else {"X-Shopify-Access-Token": token}
        return self.http.post(f"/stores/{shop}/admin/api/{version}/graphql.json",
                              json={"query": query, "variables": variables}, headers=headers)

    def body(self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        response = self.post(query, variables, **kwargs)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def data(self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """The ``data`` of a call that must succeed without top-level errors."""
        body = self.body(query, variables, **kwargs)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def customer(self, email: str | None = None, at: datetime | None = None, shop: str = SHOP, **fields: Any) -> int:
        with self.state.session() as session:
            return create_customer(session, shop, email=email, at=at, **fields).id

    def order(self, *, codes: tuple[str, ...] = (), customer_id: int | None = None, price: str = "100.00",
              at: datetime | None = None) -> int:
        with self.state.session() as session:
            return place_order(session, SHOP, line_items=[{"title": "Tent", "price": price, "quantity": 1}],
                               codes=codes, customer_id=customer_id, at=at).id


def build_devstore() -> Flask:
    app = create_app(DevstoreConfig(api_key=CLIENT_ID, api_secret="s" * 32, deliver_webhooks=False))
    app.config["TESTING"] = True
    return app


def admin_api() -> Iterator[AdminApi]:
    """A devstore whose ``demo`` store has the app installed, its bucket clock a ``FakeClock``.

    Each test module wraps this in its own ``api`` fixture (importing a fixture by name would shadow it).
    """
    app = build_devstore()
    clock = FakeClock()
    app.extensions["devstore_admin"].buckets.clock = clock
    install(app.extensions["devstore"])
    yield AdminApi(app, app.test_client(), app.extensions["devstore"], clock)
    app.extensions["devstore"].engine.dispose()
