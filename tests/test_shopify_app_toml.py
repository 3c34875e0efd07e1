"""shopify.app.toml, as ``shopify app deploy`` sends it, agrees with what the app serves and asks for."""

from __future__ import annotations

import tomllib
from urllib.parse import urlsplit

from app.config import DEFAULT_SCOPES, ROOT


def toml() -> dict:
    return tomllib.loads((ROOT / "shopify.app.toml").read_text())


def test_the_scopes_are_the_apps_default_scopes():
    assert toml()["access_scopes"]["scopes"].split(",") == DEFAULT_SCOPES.split(",")


def test_the_app_proxy_points_at_the_proxy_blueprint_and_has_its_scope(app):  # type: ignore[no-untyped-def]
    config = toml()
    proxy = config["app_proxy"]
    url, application = urlsplit(proxy["url"]), urlsplit(config["application_url"])
    assert url.scheme == "https" and url.netloc == application.netloc  # on the app's own host
    assert app.url_map.bind("x").match(url.path, method="GET")[0] == "proxy.customer_page"
    assert proxy["prefix"] in ("apps", "a", "community", "tools")  # the prefixes Shopify offers
    assert 0 < len(proxy["subpath"]) <= 30
    assert "write_app_proxy" in config["access_scopes"]["scopes"].split(",")
