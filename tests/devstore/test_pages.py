"""The pages a person uses: they render the store's data and their forms post, redirect and explain."""

from __future__ import annotations

import pytest

from devstore.models import Customer, Installation, Metafield
from devstore.pages import safe_path
from tests.devstore.conftest import DEVSTORE_KEY, OTHER_SHOP, SHOP
from tests.devstore.factories import add_codes, make_discount, subscribe

PAGE = f"/stores/{SHOP}"


def test_the_index_lists_the_stores(client):
    response = client.get("/")

    assert response.status_code == 200
    assert f'href="/stores/{SHOP}"' in response.text and "other.myshopify.com" in response.text


def test_the_overview_shows_customers_discounts_orders_and_the_webhook_log(client, state):
    make_discount(state, "WELCOME-PAGE1", usage_limit=1)
    subscribe(state, "http://127.0.0.1:9/webhooks", topic="ORDERS_PAID")
    customer_id = client.post(f"/_devstore/stores/{SHOP}/customers", json={"email": "ada@example.com"}).json["id"]
    with state.session() as session:
        session.get(Customer, customer_id).tags = ["oncecode-welcome"]
        session.add(Metafield(id=7, shop=SHOP, owner_id=f"gid://shopify/Customer/{customer_id}", namespace="oncecode",
                              key="welcome_code", type="single_line_text_field", value="WELCOME-PAGE1"))
    client.post(f"/_devstore/stores/{SHOP}/orders", json={"customer_id": customer_id, "amount": "30.00",
                                                          "codes": ["WELCOME-PAGE1"]})

    page = client.get(PAGE).text

    assert "ada@example.com" in page and "oncecode-welcome" in page
    assert "oncecode.welcome_code</code> = WELCOME-PAGE1" in page
    assert "<code>WELCOME-PAGE1</code>" in page and "1 / 1" in page
    assert "#1001" in page and "orders/paid" in page and "pending" in page
    assert "never been installed" in page


def test_an_unknown_store_page_is_a_404(client):
    assert client.get("/stores/nowhere.myshopify.com").status_code == 404
    assert client.post("/stores/nowhere.myshopify.com/customers", data={}).status_code == 404


def test_creating_a_customer_redirects_back_with_a_message(client):
    response = client.post(f"{PAGE}/customers", data={"email": "bob@example.com", "first_name": "Bob"})

    assert response.status_code == 303 and response.headers["Location"] == PAGE
    page = client.get(PAGE).text
    assert "Created bob@example.com" in page and "Bob" in page


def test_a_refused_code_is_explained_and_the_form_kept(client, state):
    make_discount(state, "MIN100", minimum_subtotal=100)

    response = client.post(f"{PAGE}/orders", data={"customer_id": "", "items": "Socks, 12.00, 2",
                                                  "shipping_price": "4.00", "codes": "min100"})

    assert response.status_code == 303
    page = client.get(PAGE).text
    assert "Order refused" in page and "minimum subtotal of 100.00" in page
    assert "Socks, 12.00, 2" in page and 'value="min100"' in page
    assert "No orders yet" in page


def test_an_order_from_the_form_is_paid(client, state):
    make_discount(state, "HALF", value="0.5")

    client.post(f"{PAGE}/orders", data={"items": "Socks, 12.00, 2\n6.00", "shipping_price": "4.00", "codes": "HALF"})

    page = client.get(PAGE).text
    assert "Order #1001 paid: 19.00 EUR" in page  # 30.00 − 15.00 + 4.00


def test_uninstall_from_the_page(client, state):
    with state.session() as session:
        session.add(Installation(shop=SHOP, client_id=DEVSTORE_KEY, scopes="read_customers", installed=True,
                                 access_token="shpat_" + "b" * 32))
    assert "Uninstall app" in client.get(PAGE).text

    assert client.post(f"{PAGE}/uninstall").status_code == 303

    page = client.get(PAGE).text
    assert "App uninstalled" in page and "Uninstalled" in page and "Uninstall app" not in page
    client.post(f"{PAGE}/uninstall")
    assert "not installed" in client.get(PAGE).text


def test_send_pending_deliveries_from_the_page(client, state, receiver):
    subscribe(state, receiver.url())
    client.put(f"/_devstore/stores/{SHOP}/faults", json={"delay": 3600})
    client.post(f"{PAGE}/customers", data={"email": "ada@example.com"})

    client.post(f"{PAGE}/deliver")

    assert "Attempted 1 pending deliveries" in client.get(PAGE).text
    assert len(receiver.requests) == 1


# --- the shareable discount link ------------------------------------------------------------------

def link_cookie(client):  # type: ignore[no-untyped-def]
    return client.get_cookie("discount_code", path=PAGE)


def test_a_discount_link_keeps_the_code_in_a_cookie_and_opens_the_store(client, state):
    make_discount(state, "SALE-10")

    response = client.get(f"{PAGE}/discount/sale-10?redirect=/collections/sale")

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    cookie = link_cookie(client)
    assert cookie is not None and cookie.value == "sale-10"
    assert (cookie.path, cookie.http_only, cookie.same_site) == (PAGE, True, "Lax")
    page = client.get(response.headers["Location"]).text
    assert "Discount code sale-10 will be applied at checkout (Shopify would now open /collections/sale)" in page


def test_a_discount_link_without_a_redirect_names_no_path(client, state):
    make_discount(state, "SALE-10")

    client.get(f"{PAGE}/discount/SALE-10")

    page = client.get(PAGE).text
    assert "Discount code SALE-10 will be applied at checkout" in page and "Shopify would now open" not in page


def test_a_discount_link_works_for_any_code_of_a_pool_discount(client, state):
    pool = make_discount(state, "POOL-BASE", usage_limit=1)
    add_codes(state, pool, "FRIEND-7QX2")

    client.get(f"{PAGE}/discount/friend-7qx2?redirect=/")

    assert link_cookie(client).value == "friend-7qx2"
    assert "Discount code friend-7qx2 will be applied at checkout" in client.get(PAGE).text


def test_a_pool_discount_lists_a_few_of_its_codes_and_counts_the_rest(client, state):
    pool = make_discount(state, "POOL-00")
    add_codes(state, pool, *(f"POOL-{n:02d}" for n in range(1, 12)))

    page = client.get(PAGE).text

    assert page.count("<code>POOL-") == 5
    assert "+ 7 more codes" in page


def test_a_discount_link_to_an_unknown_code_says_so(client, state):
    make_discount(state, "SALE-10", shop=OTHER_SHOP)  # another store's code is no code here

    response = client.get(f"{PAGE}/discount/SALE-10?redirect=/collections/sale")

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    assert link_cookie(client).value == "SALE-10"  # Shopify keeps it too, and refuses it at checkout
    page = client.get(PAGE).text
    assert "Discount code SALE-10 is not valid on this store" in page
    assert "will be applied" not in page and "Shopify would now open" not in page


@pytest.mark.parametrize("target", ["https://evil.example/sale", "//evil.example/sale", "/\\evil.example",
                                    "javascript:alert(1)", "/\t/evil.example", "collections/sale"])
def test_an_unsafe_redirect_is_ignored(client, state, target: str):
    make_discount(state, "SALE-10")

    response = client.get(f"{PAGE}/discount/SALE-10", query_string={"redirect": target})

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    page = client.get(PAGE).text
    assert "Discount code SALE-10 will be applied at checkout" in page
    assert "Shopify would now open" not in page and "evil.example" not in page


@pytest.mark.parametrize(("target", "safe"), [
    ("/collections/sale", "/collections/sale"), ("/products/mug?variant=2#top", "/products/mug?variant=2#top"),
    ("/", "/"), (None, None), ("", None), ("//evil.example", None), ("https://evil.example/", None),
    ("/\\evil.example", None), ("/\n/evil.example", None), ("sale", None), ("mailto:a@example.com", None),
])
def test_safe_path(target: str | None, safe: str | None):
    assert safe_path(target) == safe


def test_the_order_form_starts_with_the_links_code(client, state):
    make_discount(state, "SALE-10")
    assert 'name="codes" value=""' in client.get(PAGE).text

    client.get(f"{PAGE}/discount/SALE-10")

    assert 'name="codes" value="SALE-10"' in client.get(PAGE).text
    assert 'name="codes" value=""' in client.get(f"/stores/{OTHER_SHOP}").text  # the cookie is this store's


def test_a_refused_orders_own_codes_win_over_the_links_code(client, state):
    make_discount(state, "SALE-10")
    make_discount(state, "MIN100", minimum_subtotal=100)
    client.get(f"{PAGE}/discount/SALE-10")

    client.post(f"{PAGE}/orders", data={"items": "Socks, 12.00, 1", "codes": "min100"})

    assert 'name="codes" value="min100"' in client.get(PAGE).text
    assert 'name="codes" value="SALE-10"' in client.get(PAGE).text  # the refused form was shown once


def test_a_discount_link_to_an_unknown_store_is_a_404(client):
    response = client.get("/stores/nowhere.myshopify.com/discount/SALE-10")

    assert response.status_code == 404 and "nowhere.myshopify.com" in response.text
    assert "Set-Cookie" not in response.headers
