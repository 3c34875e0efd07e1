"""The baseline: a Flask app whose only route, ``GET /r/<token>``, answers a 302 to a fixed discount link.

Served by the same gunicorn settings as the real app, it shows what Flask, gunicorn and the load
generator cost on their own for a request shaped like a landing (a GET answered by a redirect with
Flask's small HTML body), so the landing's figures read as "the landing's work on top of that".
"""

from __future__ import annotations

from flask import Flask, redirect

LOCATION = "https://bench.myshopify.com/discount/BARE-CODE"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/r/<path:token>")
    def land(token: str):  # type: ignore[no-untyped-def]
        return redirect(LOCATION, 302)

    return app
