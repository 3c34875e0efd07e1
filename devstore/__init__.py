"""devstore: one or more pretend Shopify stores over HTTP, for development, demos and tests.

``create_app()`` builds the Flask app: OAuth (``oauth``), the Admin GraphQL endpoint (``admin``),
webhook deliveries (``webhooks``), pages for a person (``pages``), a JSON control API
(``control``), the storefront's app proxy with its customer log-in (``proxy``) and the admin page
that frames the embedded app, with its session tokens and App Bridge stand-in (``embedded``). Its state lives
in its own database (``state``); ``README.md`` documents the lot.
"""

from __future__ import annotations

import secrets

from flask import Flask

from devstore.state import DevstoreConfig, State


def create_app(config: DevstoreConfig | None = None) -> Flask:
    """The devstore app; without ``config`` it is read from the environment.

    One process only: the state, the GraphQL buckets and the delivery thread live in it.
    """
    config = config or DevstoreConfig.from_env()
    state = State(config)

    app = Flask(__name__)
    # Only flashed messages and a refused order form live in the session: a key per process will do.
    app.secret_key = secrets.token_hex(32)
    # Its own cookie name: cookies do not keep ports apart, and the app may run on the same host.
    app.config["SESSION_COOKIE_NAME"] = "devstore_session"
    # Shopify's field order, as in the samples, in JSON answers and in the payloads the pages show.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}

    from devstore.admin.schema import run_due_jobs
    from devstore.webhooks import Deliverer

    state.on_session.append(run_due_jobs)  # bulk mutations' jobs run a moment later, whoever looks first

    deliverer = Deliverer(state)
    app.extensions["devstore"] = state
    app.extensions["devstore_deliverer"] = deliverer

    from devstore.admin import bp as admin_bp
    from devstore.control import bp as control_bp
    from devstore.embedded import bp as embedded_bp
    from devstore.oauth import bp as oauth_bp
    from devstore.pages import bp as pages_bp
    from devstore.proxy import bp as storefront_bp

    # embedded and proxy add their control routes to control_bp when imported above
    for blueprint in (oauth_bp, admin_bp, control_bp, pages_bp, storefront_bp, embedded_bp):
        app.register_blueprint(blueprint)

    if config.deliver_webhooks:
        deliverer.start()
    return app
