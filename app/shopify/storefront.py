"""Links into a store's online store. Like every store URL they start at ``Settings.store_url``.

A shareable discount link, ``https://{shop}/discount/{CODE}``, applies the code to the buyer's cart
(Shopify keeps it in a cookie) and opens the home page, or the path given as ``redirect``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from app.config import Settings

# A path on the store: starts with one slash, no scheme or host, no query or fragment.
REDIRECT_PATH_RE = re.compile(r"/(?!/)[A-Za-z0-9\-._~/%+]*")


def home_url(settings: Settings, shop: str) -> str:
    """The store's home page: the store's base URL itself (``https://{shop}``)."""
    return settings.store_url(shop)


def discount_url(settings: Settings, shop: str, code: str, redirect_path: str | None = None) -> str:
    """The code's shareable link; ``redirect_path`` must pass ``REDIRECT_PATH_RE`` (programs check it)."""
    url = f"{settings.store_url(shop)}/discount/{quote(code, safe='')}"
    if redirect_path and redirect_path != "/":
        url += "?" + urlencode({"redirect": redirect_path})
    return url
