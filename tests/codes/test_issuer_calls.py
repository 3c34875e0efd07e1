"""What the issuer sends, call by call, with ``responses`` as Shopify: nothing paid for twice when a
job is throttled half-way, and nothing looked up that was never sent."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
import responses

from app.codes.issuance import Issuer, ShopRef, remember_customer, reserve
from app.models import IssuedCode
from app.shopify import client
from app.shopify.client import AdminClient, Throttled
from tests.conftest import make_settings
from tests.helpers import make_shop_with_programs, program_of

URL = "https://demo.myshopify.com/admin/api/2026-10/graphql.json"
COST = {"requestedQueryCost": 10, "actualQueryCost": 10,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990, "restoreRate": 100.0}}
THROTTLED = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
             "extensions": {"cost": {**COST, "actualQueryCost": None,
                                     "throttleStatus": {**COST["throttleStatus"], "currentlyAvailable": 0}}}}
ANSWERS: dict[str, dict] = {
    "discountCodeBasicCreate": {"codeDiscountNode": {"id": "gid://shopify/DiscountCodeNode/1"}, "userErrors": []},
    "metafieldsSet": {"metafields": [{"id": "gid://shopify/Metafield/1"}], "userErrors": []},
    "tagsAdd": {"node": {"id": "gid://shopify/Customer/42"}, "userErrors": []},
}


class Store:
    """Answers each operation as Shopify would, THROTTLED for the ones told to refuse."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.refuse: set[str] = set()

    def __call__(self, request) -> tuple[int, dict, str]:  # type: ignore[no-untyped-def]
        name = re.search(r"^(?:query|mutation) (\w+)", json.loads(request.body)["query"], re.MULTILINE).group(1)
        self.sent.append(name)
        if name in self.refuse:
            self.refuse.discard(name)
            return 200, {}, json.dumps(THROTTLED)
        return 200, {}, json.dumps({"data": {name: ANSWERS[name]}, "extensions": {"cost": COST}})


@pytest.fixture
def store():  # type: ignore[no-untyped-def]
    fake = Store()
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, URL, callback=fake)
        yield fake


@pytest.fixture
def issue(db, rt, monkeypatch) -> Callable[[], IssuedCode]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(client, "MIN_THROTTLED_WAIT", 0)
    shop = make_shop_with_programs(db, rt.cipher)
    customer, _ = remember_customer(db, shop.id, 42)
    row, _ = reserve(db, program_of(db, shop), customer, "welcome:1:42")
    db.commit()

    def run() -> IssuedCode:
        # No wait budget: a THROTTLED answer is handed straight back to the job.
        admin = AdminClient(make_settings(), shop.domain, "shpat_x", wait_budget=0)
        issuer = Issuer(rt.db, rt.settings, admin, ShopRef(shop.id, shop.domain), claimant="job-1")
        issuer.issue(issuer.claim())
        return issuer.load([row.id])[0]

    return run


def test_one_code_costs_one_create_one_metafields_set_and_one_tag(store, issue):
    assert issue().status == "attached"
    assert store.sent == ["discountCodeBasicCreate", "metafieldsSet", "tagsAdd"]


def test_a_create_that_was_throttled_is_not_looked_up_afterwards(store, issue):
    store.refuse = {"discountCodeBasicCreate"}
    with pytest.raises(Throttled):
        issue()
    assert issue().status == "attached"
    # Shopify ran nothing the first time, so the retry creates at once: no codeDiscountNodeByCode.
    assert store.sent == ["discountCodeBasicCreate"] * 2 + ["metafieldsSet", "tagsAdd"]


def test_a_job_throttled_before_the_tag_does_not_set_the_metafields_again(store, issue):
    store.refuse = {"tagsAdd"}
    with pytest.raises(Throttled):
        issue()
    row = issue()
    assert row.status == "attached" and row.metafields_at is not None
    assert store.sent == ["discountCodeBasicCreate", "metafieldsSet", "tagsAdd", "tagsAdd"]
