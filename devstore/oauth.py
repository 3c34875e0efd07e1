"""OAuth as a Shopify store answers it: the authorize (approve) page and the token endpoint.

``GET  /stores/<shop>/admin/oauth/authorize``     the merchant approves the requested scopes
``POST /stores/<shop>/admin/oauth/access_token``  code → token, refresh token → new tokens, session
                                                  token → token (token exchange)

Installing and uninstalling (the ``Installation`` row and its tokens) live here too. Tokens are
expiring offline tokens when the exchange asks for ``expiring=1``: the access token lives an hour,
the refresh token 90 days and rotates on every refresh; the previous refresh token stays valid until
the new one is first used (Shopify's behaviour since 2026-08-28).
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Blueprint, jsonify, redirect, render_template, request
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.shopify.verify import query_hmac
from devstore import payloads, session_tokens
from devstore.checkout import get_store
from devstore.errors import Conflict, DevstoreError, InvalidInput, NotFound
from devstore.models import AuthorizationCode, Discount, Installation, TokenExchange, WebhookSubscription
from devstore.state import DevstoreConfig
from devstore.web import current_state
from devstore.webhooks import emit

bp = Blueprint("oauth", __name__, url_prefix="/stores/<shop>/admin/oauth")

ACCESS_TOKEN_SECONDS = 3600
REFRESH_TOKEN_SECONDS = 90 * 24 * 3600  # 7776000, as in the samples
CODE_NOT_FOUND = "The authorization code was not found or was already used"
# Token exchange (RFC 8693 names, as Shopify's docs and libraries send them).
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a name, not a secret
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105
ONLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:online-access-token"  # noqa: S105


class OAuthError(Exception):
    """An error of the token endpoint, answered as ``{"error", "error_description"}`` JSON."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@bp.errorhandler(OAuthError)
def _oauth_error(exc: OAuthError):  # type: ignore[no-untyped-def]
    return jsonify(error=exc.error, error_description=exc.description), exc.status


@bp.errorhandler(DevstoreError)
def _page_error(exc: DevstoreError):  # type: ignore[no-untyped-def]
    return render_template("error.html", message=str(exc), status=exc.status), exc.status


# --- authorize -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuthorizationRequest:
    shop: str
    client_id: str
    scopes: tuple[str, ...]
    redirect_uri: str
    state: str | None

    def hidden_fields(self) -> dict[str, str]:
        """What the approve form posts back, so the decision is checked like the request was."""
        fields = {"client_id": self.client_id, "scope": ",".join(self.scopes), "redirect_uri": self.redirect_uri}
        if self.state is not None:
            fields["state"] = self.state
        return fields


def parse_authorization(shop: str, params: Mapping[str, Any], config: DevstoreConfig) -> AuthorizationRequest:
    """Check an authorize request as Shopify does before it shows the approve page."""
    client_id = str(params.get("client_id") or "")
    if not hmac.compare_digest(client_id.encode(), config.api_key.encode()):
        raise InvalidInput(f"Oauth error invalid_request: there is no app with client_id {client_id!r} on {shop}")
    redirect_uri = str(params.get("redirect_uri") or "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("Oauth error invalid_request: the redirect_uri is missing or not an absolute URL")
    grant_options = params.getlist("grant_options[]") if hasattr(params, "getlist") else []
    if "per-user" in grant_options:
        raise InvalidInput("Oauth error invalid_request: devstore grants offline access only; "
                           "online (per-user) tokens are not supported")
    scopes = tuple(dict.fromkeys(s.strip() for s in str(params.get("scope") or "").split(",") if s.strip()))
    state = params.get("state")
    return AuthorizationRequest(shop, client_id, scopes, redirect_uri, None if state is None else str(state))


def host_param(shop: str) -> str:
    """``host`` in a callback or an admin launch: base64 of the store's admin address, without ``=``
    padding, as in Shopify's own (captured) launches and callbacks."""
    name = shop.removesuffix(".myshopify.com")
    return base64.b64encode(f"admin.shopify.com/store/{name}".encode()).decode().rstrip("=")


def callback_url(authorization: AuthorizationRequest, code: str, secret: str, now: float | None = None) -> str:
    """``redirect_uri`` with Shopify's signed callback query (hex HMAC over the sorted pairs)."""
    params = {"code": code, "host": host_param(authorization.shop), "shop": authorization.shop,
              "timestamp": str(int(time.time() if now is None else now))}
    if authorization.state is not None:
        params["state"] = authorization.state
    params["hmac"] = query_hmac(secret, params)
    target = urlsplit(authorization.redirect_uri)
    query = "&".join(part for part in (target.query, urlencode(sorted(params.items()))) if part)
    return urlunsplit((target.scheme, target.netloc, target.path, query, ""))


def _approve(authorization: AuthorizationRequest):  # type: ignore[no-untyped-def]
    state = current_state()
    code = secrets.token_hex(16)
    with state.session() as session:
        session.add(AuthorizationCode(code=code, shop=authorization.shop, client_id=authorization.client_id,
                                      scopes=",".join(authorization.scopes)))
    return redirect(callback_url(authorization, code, state.config.api_secret), 302)


@bp.get("/authorize")
def authorize(shop: str):  # type: ignore[no-untyped-def]
    """The approve page (or, with ``auto_approve``, the redirect the Install button would give)."""
    state = current_state()
    with state.session() as session:
        store = get_store(session, shop)
        installation = session.scalar(select(Installation).where(Installation.shop == shop))
        installed = installation is not None and installation.installed
    authorization = parse_authorization(shop, request.args, state.config)
    if state.config.auto_approve:
        return _approve(authorization)
    return render_template("authorize.html", store=store, authorization=authorization, installed=installed)


@bp.post("/authorize")
def decide(shop: str):  # type: ignore[no-untyped-def]
    """The approve page's Install or Cancel."""
    state = current_state()
    with state.session() as session:
        store = get_store(session, shop)
    authorization = parse_authorization(shop, request.form, state.config)
    if request.form.get("decision") == "install":
        return _approve(authorization)
    return render_template("cancelled.html", store=store)


# --- access_token ----------------------------------------------------------------------------------

def _token_fields() -> dict[str, str]:
    """The body as JSON or as a form, as Shopify accepts both."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise OAuthError(400, "invalid_request", "The request body is not a JSON object")
        return {key: str(value) for key, value in body.items() if value is not None}
    return request.form.to_dict()


def _authenticate_client(fields: Mapping[str, str], config: DevstoreConfig) -> None:
    given_id, given_secret = fields.get("client_id", ""), fields.get("client_secret", "")
    # Both compared in full, so timing says nothing about which one was wrong.
    id_ok = hmac.compare_digest(given_id.encode(), config.api_key.encode())
    secret_ok = hmac.compare_digest(given_secret.encode(), config.api_secret.encode())
    if not (id_ok and secret_ok):
        raise OAuthError(401, "invalid_client", "Client authentication failed: unknown client_id or wrong "
                                                "client_secret")


@bp.post("/access_token")
def access_token(shop: str):  # type: ignore[no-untyped-def]
    """Exchange an authorization code, or refresh an expiring offline token."""
    state = current_state()
    fields = _token_fields()
    with state.session() as session:
        try:
            get_store(session, shop)
        except NotFound as exc:
            raise OAuthError(404, "not_found", str(exc)) from None
        _authenticate_client(fields, state.config)
        grant_type = fields.get("grant_type") or "authorization_code"
        if grant_type == "authorization_code":
            answer = exchange_code(session, shop, fields.get("code", ""), state.config.api_key,
                                   expiring=fields.get("expiring", "0") in ("1", "true"))
        elif grant_type == "refresh_token":
            answer = refresh(session, shop, fields.get("refresh_token", ""))
        elif grant_type == TOKEN_EXCHANGE_GRANT:
            answer = exchange_session_token(session, shop, fields, state.config)
        else:
            raise OAuthError(400, "unsupported_grant_type", "devstore supports authorization_code, refresh_token "
                                                            f"and {TOKEN_EXCHANGE_GRANT}, not {grant_type}")
    return jsonify(answer)


def exchange_session_token(session: Session, shop: str, fields: Mapping[str, str], config: DevstoreConfig,
                           now: datetime | None = None) -> dict[str, Any]:
    """Token exchange: a session token the admin issued for this shop → an offline access token with the
    installation's scopes (expiring with ``expiring=1``), answered like the code exchange. The new
    token replaces the installation's tokens, as a new install does; every exchange is counted."""
    subject_token = fields.get("subject_token", "")
    if not subject_token:
        raise OAuthError(400, "missing_subject_token", "The subject_token parameter is required")
    if fields.get("subject_token_type") != ID_TOKEN_TYPE:
        raise OAuthError(400, "invalid_request", f"subject_token_type must be {ID_TOKEN_TYPE}")
    requested = fields.get("requested_token_type", "")
    if requested == ONLINE_TOKEN_TYPE:
        raise OAuthError(400, "invalid_request", "devstore issues offline access tokens only; online "
                                                 "(per-user) tokens are not supported")
    if requested != OFFLINE_TOKEN_TYPE:
        raise OAuthError(400, "invalid_request", f"requested_token_type must be {OFFLINE_TOKEN_TYPE}")
    try:
        claims = session_tokens.verify(config, subject_token, shop)
    except session_tokens.InvalidSubjectToken as exc:
        raise OAuthError(400, "invalid_subject_token", str(exc)) from None
    installation = session.scalar(select(Installation).where(Installation.shop == shop))
    if installation is None or not installation.installed:
        raise OAuthError(401, "invalid_client", f"The app is not installed on {shop}")
    expiring = fields.get("expiring", "0").lower() in ("1", "true")  # JSON 1 and true arrive as "1", "True"
    issue_tokens(installation, expiring, now or datetime.now(UTC))
    session.add(TokenExchange(shop=shop, requested_token_type=requested, expiring=expiring,
                              subject_jti=str(claims["jti"])))
    return token_answer(installation, refreshed=False)


def exchange_code(session: Session, shop: str, code: str, client_id: str, expiring: bool,
                  now: datetime | None = None) -> dict[str, Any]:
    """Use a code once and install the app with its scopes; the answer is Shopify's token JSON."""
    grant = session.get(AuthorizationCode, code) if code else None
    if grant is None or grant.used or grant.shop != shop or grant.client_id != client_id:
        raise OAuthError(400, "invalid_request", CODE_NOT_FOUND)
    grant.used = True
    moment = now or datetime.now(UTC)
    installation = install(session, shop, client_id, grant.scopes, moment)
    issue_tokens(installation, expiring, moment)
    return token_answer(installation, refreshed=False)


def install(session: Session, shop: str, client_id: str, scopes: str, now: datetime) -> Installation:
    """The app's installation on ``shop``: created, re-activated after an uninstall, or re-granted."""
    installation = session.scalar(select(Installation).where(Installation.shop == shop))
    if installation is None:
        installation = Installation(shop=shop, client_id=client_id, installed_at=now)
        session.add(installation)
    elif not installation.installed:
        installation.installed_at = now
    installation.installed = True
    installation.client_id = client_id
    installation.scopes = scopes
    return installation


def managed_install(session: Session, shop: str, config: DevstoreConfig, scopes: str | None = None,
                    now: datetime | None = None) -> Installation:
    """Shopify managed installation: the app installed with the scopes of shopify.app.toml (or
    ``scopes``), without calling the app — no redirect, no webhook, no token until the app exchanges a
    session token. Installed already: the grant's scopes are updated and its tokens kept."""
    get_store(session, shop)
    granted = config.app_scopes if scopes is None else scopes
    return install(session, shop, config.api_key, granted, now or datetime.now(UTC))


def issue_tokens(installation: Installation, expiring: bool, now: datetime) -> None:
    """New tokens, replacing whatever the installation had (a reinstall starts a new chain)."""
    installation.access_token = "shpat_" + secrets.token_hex(16)
    installation.previous_refresh_token = None
    if expiring:
        installation.access_token_expires_at = now + timedelta(seconds=ACCESS_TOKEN_SECONDS)
        installation.refresh_token = "shprt_" + secrets.token_hex(16)
        installation.refresh_token_expires_at = now + timedelta(seconds=REFRESH_TOKEN_SECONDS)
    else:
        installation.access_token_expires_at = None
        installation.refresh_token = installation.refresh_token_expires_at = None


def refresh(session: Session, shop: str, refresh_token: str, now: datetime | None = None) -> dict[str, Any]:
    """Rotate: a new access token and a new refresh token; the old access token stops working.

    The current refresh token or the previous one (until its successor is used) are accepted, so a
    client that lost the answer to a refresh can retry with the token it still has.
    """
    moment = now or datetime.now(UTC)
    installation = session.scalar(select(Installation).where(Installation.shop == shop))
    if installation is None or not _accepts_refresh(installation, refresh_token, moment):
        raise OAuthError(400, "invalid_grant", "The refresh token is invalid, expired, revoked or already replaced")
    # Using the current token retires the previous one and makes the used one "previous"; retrying
    # with the previous one (its answer was lost) keeps it valid until the token issued now is used.
    used_current = refresh_token == installation.refresh_token
    previous = installation.refresh_token if used_current else installation.previous_refresh_token
    issue_tokens(installation, expiring=True, now=moment)
    installation.previous_refresh_token = previous
    return token_answer(installation, refreshed=True)


def _accepts_refresh(installation: Installation, refresh_token: str, moment: datetime) -> bool:
    if not (installation.installed and refresh_token and installation.refresh_token_expires_at):
        return False
    if installation.refresh_token_expires_at <= moment:
        return False
    return refresh_token in (installation.refresh_token, installation.previous_refresh_token)


def token_answer(installation: Installation, refreshed: bool) -> dict[str, Any]:
    """Shopify's JSON, field order included (samples oauth-access-token-*.json)."""
    if installation.refresh_token is None:
        return {"access_token": installation.access_token, "scope": installation.scopes}
    if refreshed:
        return {"access_token": installation.access_token, "expires_in": ACCESS_TOKEN_SECONDS,
                "refresh_token": installation.refresh_token, "refresh_token_expires_in": REFRESH_TOKEN_SECONDS,
                "scope": installation.scopes}
    return {"access_token": installation.access_token, "scope": installation.scopes,
            "expires_in": ACCESS_TOKEN_SECONDS, "refresh_token": installation.refresh_token,
            "refresh_token_expires_in": REFRESH_TOKEN_SECONDS}


# --- uninstall -------------------------------------------------------------------------------------

def uninstall(session: Session, shop: str, now: datetime | None = None) -> Installation:
    """Revoke the tokens, mark the app uninstalled, fire ``app/uninstalled``, drop its subscriptions."""
    store = get_store(session, shop)
    installation = session.scalar(select(Installation).where(Installation.shop == shop))
    if installation is None or not installation.installed:
        raise Conflict(f"the app is not installed on {shop}")
    installation.installed = False
    installation.access_token = installation.access_token_expires_at = None
    installation.refresh_token = installation.previous_refresh_token = None
    installation.refresh_token_expires_at = None
    has_discounts = bool(session.scalar(select(func.count()).select_from(Discount).where(Discount.shop == shop)))
    # The deliveries carry their address, so they go out although the subscriptions go with the app.
    emit(session, shop, "app/uninstalled", payloads.shop_payload(store, has_discounts), at=now)
    session.execute(delete(WebhookSubscription).where(WebhookSubscription.shop == shop))
    return installation
