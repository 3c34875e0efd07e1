"""The embedded admin: the pages a merchant sees inside their Shopify admin (``/admin/...``).

Pages are server-rendered and sit as thinly on the domain (``app.codes``, ``app.lifecycle``) as the
JSON API and the CLI do: a route verifies the request, calls a domain function, renders its answer.
``auth`` verifies a document request from its ``id_token`` and installs a managed-installation shop
on its first open (``install``); ``routes`` holds the pages.
"""

from app.admin import health, referrals  # noqa: F401  (the Referrals and Health pages)
from app.admin import home as _home  # noqa: F401  (the pages add their routes to the blueprint)
from app.admin import programs as _programs  # noqa: F401  (the Programs pages)
from app.admin.routes import bp

__all__ = ["bp"]
from app.admin import codes  # noqa: E402,F401  (registers the Codes page on bp)
