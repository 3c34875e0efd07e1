"""devstore's errors, each with the HTTP status its JSON API and pages answer."""

from __future__ import annotations


class DevstoreError(Exception):
    status = 400


class InvalidInput(DevstoreError):
    """The request is malformed: a missing field, a negative price, an unknown fault."""

    status = 400


class NotFound(DevstoreError):
    status = 404


class Conflict(DevstoreError):
    """The request is well-formed but the store's state refuses it (e.g. already uninstalled)."""

    status = 409


class CodeRefused(Conflict):
    """Checkout refused a discount code; ``rule`` names the rule that refused it."""

    def __init__(self, code: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.rule = rule
