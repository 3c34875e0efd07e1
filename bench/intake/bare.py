"""The baseline: a Flask app with one ``POST /webhooks`` that reads the body and answers 200.

Served by the same gunicorn settings as the real app, it shows what Flask, gunicorn and the load
generator cost on their own, so the real app's figures can be read as "intake work on top of that".
"""

from __future__ import annotations

from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks")
    def receive():  # type: ignore[no-untyped-def]
        request.get_data(cache=False)  # read the body, as the real route does before verifying it
        return "", 200

    return app
