"""A small exception hierarchy, mapped to HTTP status codes at the edges (see ``app/__init__.py``)."""

from __future__ import annotations


class OnceCodeError(Exception):
    """Base of every error we raise on purpose. ``status`` is what an HTTP edge answers with."""

    status = 500


class ConfigError(OnceCodeError):
    """The environment does not describe a runnable app; the message names the variable."""


class BadRequest(OnceCodeError):
    status = 400


class Forbidden(OnceCodeError):
    status = 403


class Unauthorized(OnceCodeError):
    status = 401


class NotFound(OnceCodeError):
    status = 404


class Conflict(OnceCodeError):
    """The request is understood but the thing is not in a state that allows it."""

    status = 409
