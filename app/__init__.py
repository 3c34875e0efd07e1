"""OnceCode: unique, single-use Shopify discount codes. ``create_app()`` builds the web app."""

from __future__ import annotations

import json
import logging

from flask import Flask, g, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from app import runtime
from app.config import INSTANCE_DIR, ROOT, Settings, load_settings
from app.errors import ConfigError, OnceCodeError
from app.headers import init_security_headers
from app.ratelimit import init_rate_limits

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app. Without ``settings`` they come from the environment (and ``.env``)."""
    if settings is None:
        from dotenv import load_dotenv

        load_dotenv(ROOT / ".env")  # never overrides variables already set
        settings = _cli_settings() if _loaded_by_flask_cli() else load_settings()
    rt = runtime.configure(settings)

    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.webhook_max_bytes,
        SESSION_COOKIE_NAME="oncecode_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.is_production,
        # Lax: the cookie must come back on Shopify's top-level redirect to /auth/callback.
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=600,
    )
    app.extensions["oncecode"] = rt
    from app.web import IdConverter

    app.url_map.converters["id"] = IdConverter  # before the blueprints, whose routes use it

    from app.admin import bp as admin_bp
    from app.api import pools as _pool_routes  # noqa: F401  (adds the pool's routes to the API blueprint)
    from app.api import referral_admin as _referral_admin  # noqa: F401  (referral settings and list routes)
    from app.api import referrals as _api_referrals  # noqa: F401  (adds its routes to the API blueprint)
    from app.api.routes import bp as api_bp
    from app.auth.routes import bp as auth_bp
    from app.cli import register_cli
    from app.health import bp as health_bp
    from app.proxy.routes import bp as proxy_bp
    from app.referrals.routes import bp as referrals_bp
    from app.webhooks.routes import bp as webhooks_bp

    for blueprint in (auth_bp, webhooks_bp, api_bp, health_bp, proxy_bp, referrals_bp, admin_bp):
        app.register_blueprint(blueprint)
    init_rate_limits(app, settings, rt.redis)  # after the blueprints: it exempts some by name
    init_security_headers(app)
    register_cli(app)
    _register_error_handlers(app)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    return app


def _loaded_by_flask_cli() -> bool:
    """Whether ``flask --app app …`` is building this app (its ScriptInfo is on the click context)."""
    import click
    from flask.cli import ScriptInfo

    context = click.get_current_context(silent=True)
    return context is not None and context.find_object(ScriptInfo) is not None


def _cli_settings() -> Settings:
    """The CLI's settings: ``make run``'s in development (without exports), and a one-line error
    naming what is missing instead of a traceback."""
    import click

    try:
        return load_settings(prefer_development=True)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/webhooks", "/healthz")) or request.accept_mimetypes.best == (
        "application/json")


def _error(status: int, message: str):  # type: ignore[no-untyped-def]
    if _wants_json():
        return jsonify(error=message), status
    return message + "\n", status, {"Content-Type": "text/plain; charset=utf-8"}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(OnceCodeError)
    def _ours(exc: OnceCodeError):  # type: ignore[no-untyped-def]
        return _error(exc.status, str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):  # type: ignore[no-untyped-def]
        if exc.code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            return _error(413, f"request body larger than {limit} bytes")
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database(exc: OperationalError | InterfaceError):  # type: ignore[no-untyped-def]
        log.error("database unavailable", extra={"path": request.path, "reason": type(exc.orig).__name__})
        return _error(503, "database unavailable; try again shortly")

    @app.errorhandler(RedisError)
    def _queue(exc: RedisError):  # type: ignore[no-untyped-def]
        log.error("Redis unavailable", extra={"path": request.path, "reason": type(exc).__name__})
        return _error(503, "the job queue is unavailable; try again shortly")

    @app.errorhandler(RecursionError)
    def _too_deep(exc: RecursionError):  # type: ignore[no-untyped-def]
        # JSON (a body, a session token's claims) nested deeper than the parser can follow: the
        # request's fault, whichever route read it.
        log.warning("request refused: nested too deeply", extra={"path": request.path})
        return _error(400, "the request body is nested too deeply to read")

    @app.errorhandler(json.JSONDecodeError)
    def _not_json(exc: json.JSONDecodeError):  # type: ignore[no-untyped-def]
        # Request handlers parse bodies; Admin API answers are parsed by the client, which raises its own.
        return _error(400, f"the request body is not valid JSON ({exc.msg} at character {exc.pos})")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error", extra={"path": request.path})
        return _error(500, "internal error; it has been logged")
