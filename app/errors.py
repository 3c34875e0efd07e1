"""A small exception hierarchy, mapped to HTTP status codes at the edges (see ``app/__init__.py``)."""

from __future__ import annotations

from collections.abc import Iterable


class OnceCodeError(Exception):
    """Base of every error we raise on purpose. ``status`` is what an HTTP edge answers with."""

    status = 500


class ConfigError(OnceCodeError):
    """The environment does not describe a runnable app; the message names the variable."""


class BadRequest(OnceCodeError):
    status = 400


class InvalidChange(BadRequest):
    """A change refused for one or more problems, each about one field (``None``: about the change as a
    whole, such as an unknown field). The message is every problem's text joined by "; ", as the API
    and the CLI show it; ``problems`` keeps them apart with their fields, so that a page can put each
    next to its field without reading the prose."""

    def __init__(self, problems: Iterable[tuple[str | None, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(text for _, text in self.problems))

    def by_field(self) -> dict[str | None, list[str]]:
        """The problems' texts by field, in the order they were found."""
        found: dict[str | None, list[str]] = {}
        for name, text in self.problems:
            found.setdefault(name, []).append(text)
        return found


class Forbidden(OnceCodeError):
    status = 403


class Unauthorized(OnceCodeError):
    status = 401


class NotFound(OnceCodeError):
    status = 404


class Conflict(OnceCodeError):
    """The request is understood but the thing is not in a state that allows it."""

    status = 409
