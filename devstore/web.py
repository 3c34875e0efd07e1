"""The devstore objects a request reaches through ``current_app``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

from devstore.state import State

if TYPE_CHECKING:
    from devstore.webhooks import Deliverer


def current_state() -> State:
    """The state of the devstore serving this request."""
    return current_app.extensions["devstore"]


def current_deliverer() -> Deliverer:
    """The webhook deliverer of the devstore serving this request."""
    return current_app.extensions["devstore_deliverer"]
