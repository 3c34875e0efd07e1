"""The app-wide error handlers (app/__init__.py): input too deeply nested or not JSON is the
request's fault, a 400 with a plain message, whichever route trips over it."""

from __future__ import annotations

import json

import pytest


def _deep() -> None:
    json.loads("[" * 100_000 + "]" * 100_000)


def _not_json() -> None:
    json.loads("{nope")


@pytest.fixture
def client(app_factory):  # type: ignore[no-untyped-def]
    # Routes that parse what they were sent the way future code might; on a test app only.
    app = app_factory()
    app.add_url_rule("/api/deep", "deep", _deep)
    app.add_url_rule("/deep-page", "deep_page", _deep)
    app.add_url_rule("/api/not-json", "not_json", _not_json)
    return app.test_client()


def test_json_nested_too_deeply_anywhere_is_a_400(client):
    answer = client.get("/api/deep")
    assert answer.status_code == 400
    assert answer.json == {"error": "the request body is nested too deeply to read"}


def test_a_page_answers_it_in_plain_text(client):
    answer = client.get("/deep-page")
    assert answer.status_code == 400 and answer.mimetype == "text/plain"
    assert answer.text == "the request body is nested too deeply to read\n"


def test_invalid_json_anywhere_is_a_400_saying_where(client):
    answer = client.get("/api/not-json")
    assert answer.status_code == 400
    assert answer.json == {"error": "the request body is not valid JSON (Expecting property name enclosed in "
                                    "double quotes at character 1)"}
