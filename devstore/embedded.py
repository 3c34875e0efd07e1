"""The admin's side of an embedded app: the page that frames it, its session tokens, managed installs.

``GET  /stores/<shop>/admin/apps/<handle>[/<path>]``   the admin page framing ``APP_URL`` + path with
                                                      the launch parameters Shopify sends
``POST /stores/<shop>/admin/apps/<handle>/install``   "Install": a Shopify managed installation
``POST /stores/<shop>/admin/app_bridge/id_token``     a fresh session token for the framed app (asked by
                                                      the admin page's script for App Bridge)
``GET  /_devstore/app-bridge.js``                     the App Bridge stand-in the app loads

The launch (``launch_params``) is what Shopify's admin puts on the app's URL: ``embedded=1``,
``hmac``, ``host``, ``id_token``, ``locale``, ``session``, ``shop``, ``timestamp``, plus the admin URL's
own query, sorted by name, ``hmac`` the hex HMAC-SHA256 with the client secret over all the others
(as in an OAuth callback). An admin session (``sid`` in the tokens, ``session`` in the launch) lives in
devstore's session cookie, per store: the token endpoint mints only for a store whose admin page this
browser opened, and only when asked from devstore's own origin.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import (
    Blueprint,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from sqlalchemy import select

from app.shopify.verify import query_hmac
from devstore import checkout, oauth, session_tokens, summaries
from devstore.control import bp as control_bp  # the control API's blueprint: its error answers, its JSON body
from devstore.control import json_body
from devstore.errors import Conflict, DevstoreError, InvalidInput, NotFound
from devstore.models import Installation, TokenExchange
from devstore.state import DevstoreConfig
from devstore.web import current_state

bp = Blueprint("embedded", __name__)

ADMIN_SESSIONS = "admin_sessions"  # {shop: {"sid", "session"}} in devstore's signed session cookie
LOCALE = "en"
# The launch's own parameters: taken out of the admin URL's query before they are set afresh.
LAUNCH_PARAMS = ("embedded", "hmac", "host", "id_token", "locale", "session", "shop", "timestamp")


# --- the launch ----------------------------------------------------------------------------------

def launch_params(config: DevstoreConfig, shop: str, admin_session: dict[str, str], extra: list[tuple[str, str]],
                  now: float | None = None) -> list[tuple[str, str]]:
    """The app home's query as Shopify's admin sends it: sorted by name, signed with ``hmac``."""
    moment = int(time.time() if now is None else now)
    params = {key: value for key, value in extra if key not in LAUNCH_PARAMS}
    params.update({"embedded": "1", "host": oauth.host_param(shop),
                   "id_token": session_tokens.mint(config, shop, admin_session["sid"], now=moment),
                   "locale": LOCALE, "session": admin_session["session"], "shop": shop, "timestamp": str(moment)})
    params["hmac"] = query_hmac(config.api_secret, params)
    return sorted(params.items())


def launch_url(config: DevstoreConfig, shop: str, path: str, admin_session: dict[str, str],
               extra: list[tuple[str, str]] | None = None, now: float | None = None) -> str:
    """``APP_URL`` + the app home's path + ``path``, with the signed launch query."""
    if not config.app_home_url:
        raise Conflict("devstore does not know where the app runs: set APP_URL (or DevstoreConfig.app_url)")
    query = urlencode(launch_params(config, shop, admin_session, extra or [], now))
    return f"{config.app_home_url}/{path.lstrip('/')}?{query}"


def legacy_install_url(config: DevstoreConfig, shop: str, now: float | None = None) -> str:
    """The app's URL as Shopify opens it to install an app that runs its own OAuth (authorization
    code grant): ``shop``, ``host``, ``timestamp`` and their ``hmac``, top level, not framed."""
    if not config.app_home_url:
        raise Conflict("devstore does not know where the app runs: set APP_URL (or DevstoreConfig.app_url)")
    params = {"host": oauth.host_param(shop), "shop": shop, "timestamp": str(int(time.time() if now is None else now))}
    params["hmac"] = query_hmac(config.api_secret, params)
    return f"{config.app_home_url}/?{urlencode(sorted(params.items()))}"


def admin_session(shop: str) -> dict[str, str]:
    """This browser's admin session on ``shop``, started on its first admin page."""
    sessions = dict(session.get(ADMIN_SESSIONS) or {})
    if shop not in sessions:
        sessions[shop] = session_tokens.new_admin_session()
        session[ADMIN_SESSIONS] = sessions
    return sessions[shop]


def _known_app(config: DevstoreConfig, app: str) -> None:
    if app not in (config.app_handle, config.api_key):
        raise NotFound(f"no app {app!r} on this store: the app's handle is {config.app_handle!r}")


def _installation(shop: str) -> tuple[dict[str, Any], bool]:
    with current_state().session() as db:
        store = summaries.store(db, checkout.get_store(db, shop))
    install = store["installation"]
    return store, bool(install and install["installed"])


# --- pages ---------------------------------------------------------------------------------------

@bp.app_context_processor
def _admin_helpers() -> dict[str, Any]:
    """For the store page's links to the admin: the app's handle."""
    return {"app_handle": current_state().config.app_handle}


@bp.errorhandler(DevstoreError)
def _page_error(exc: DevstoreError):  # type: ignore[no-untyped-def]
    return render_template("error.html", message=str(exc), status=exc.status), exc.status


@bp.get("/stores/<shop>/admin/apps/<app>", defaults={"path": ""}, strict_slashes=False)
@bp.get("/stores/<shop>/admin/apps/<app>/<path:path>")
def app_page(shop: str, app: str, path: str):  # type: ignore[no-untyped-def]
    """The admin with the app in its frame (or, not installed, Shopify's install choices)."""
    config = current_state().config
    store, installed = _installation(shop)
    _known_app(config, app)
    base = url_for("embedded.app_page", shop=shop, app=config.app_handle)
    if not installed:
        return render_template("admin_install.html", store=store, config=config, base=base,
                               scopes=[s for s in config.app_scopes.split(",") if s],
                               oauth_url=legacy_install_url(config, shop) if config.app_home_url else None)
    if not config.app_home_url:
        raise Conflict("devstore does not know where the app runs: set APP_URL (or DevstoreConfig.app_url)")
    src = launch_url(config, shop, path, admin_session(shop), parse_qsl(request.query_string.decode(),
                                                                        keep_blank_values=True))
    response = make_response(render_template(
        "admin_app.html", store=store, config=config, base=base, src=src,
        app_origin=_origin(config.app_home_url), home_url=config.app_home_url,
        token_url=url_for("embedded.id_token", shop=shop),
        bridge={"shop": shop, "host": oauth.host_param(shop), "locale": LOCALE}))
    response.headers["Cache-Control"] = "no-store"  # the frame's id_token is good for a minute
    return response


@bp.post("/stores/<shop>/admin/apps/<app>/install")
def install(shop: str, app: str):  # type: ignore[no-untyped-def]
    """The install page's "Install": Shopify installs the app itself (managed installation)."""
    config = current_state().config
    _known_app(config, app)
    with current_state().session() as db:
        oauth.managed_install(db, shop, config)
    return redirect(url_for("embedded.app_page", shop=shop, app=config.app_handle), 303)


@bp.post("/stores/<shop>/admin/app_bridge/id_token")
def id_token(shop: str):  # type: ignore[no-untyped-def]
    """A fresh session token for the app framed by this browser's admin page of ``shop``.

    Asked by the admin page's own script (same origin: the ``Origin`` header must be devstore's), from
    a browser that opened this store's admin (its admin session), for an app that is installed."""
    own = request.host_url.rstrip("/")
    if request.headers.get("Origin") != own or request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return _json_error(403, "session tokens are minted for the admin page's own script only "
                                f"(Origin {own})")
    known = (session.get(ADMIN_SESSIONS) or {}).get(shop)
    if known is None:
        return _json_error(403, f"this browser has no admin session on {shop}: open its admin page first")
    config = current_state().config
    _, installed = _installation(shop)
    if not installed:
        return _json_error(409, f"the app is not installed on {shop}")
    response = jsonify(id_token=session_tokens.mint(config, shop, known["sid"]))
    response.headers["Cache-Control"] = "no-store"
    return response


def _json_error(status: int, message: str):  # type: ignore[no-untyped-def]
    return jsonify(error=message), status


@bp.get("/_devstore/app-bridge.js")
def app_bridge_js():  # type: ignore[no-untyped-def]
    """The App Bridge stand-in (``APP_BRIDGE_URL`` in development and tests)."""
    response = send_from_directory(current_app.static_folder or "static", "app-bridge.js",
                                   mimetype="text/javascript", max_age=0)
    response.headers["Access-Control-Allow-Origin"] = "*"  # a plain <script> needs none; module loads do
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- control API ---------------------------------------------------------------------------------

@control_bp.post("/stores/<shop>/managed_install")
def control_managed_install(shop: str):  # type: ignore[no-untyped-def]
    """Install the app as Shopify does for a managed installation (toml scopes, or ``{"scopes"}``)."""
    scopes = json_body().get("scopes")
    if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
        scopes = ",".join(scopes)
    if scopes is not None and not isinstance(scopes, str):
        raise InvalidInput("scopes must be a comma-separated string or a list of scope names")
    config = current_state().config
    with current_state().session() as db:
        oauth.managed_install(db, shop, config, scopes)
        db.flush()
        return jsonify(summaries.store(db, checkout.get_store(db, shop)))


@control_bp.get("/stores/<shop>/token_exchanges")
def control_token_exchanges(shop: str):  # type: ignore[no-untyped-def]
    """How many access tokens token exchange issued on the store, and each one."""
    with current_state().session() as db:
        checkout.get_store(db, shop)
        rows = db.scalars(select(TokenExchange).where(TokenExchange.shop == shop)
                          .order_by(TokenExchange.id.desc())).all()
        return jsonify(count=len(rows), exchanges=[
            {"requested_token_type": r.requested_token_type, "expiring": r.expiring, "subject_jti": r.subject_jti,
             "created_at": summaries.ts(r.created_at)} for r in rows])


@control_bp.post("/stores/<shop>/session_token")
def control_session_token(shop: str):  # type: ignore[no-untyped-def]
    """A session token for the store's owner, as the admin would mint it (for scripts and tests).

    Minted whether or not the app is installed, so a test can present one to a store that uninstalled it.
    ``{"sid"?, "sub"?}`` override the admin session and the user."""
    body = json_body()
    for name in ("sid", "sub"):
        if name in body and not isinstance(body[name], str):
            raise InvalidInput(f"{name} must be a string")
    config = current_state().config
    with current_state().session() as db:
        checkout.get_store(db, shop)
    claims = session_tokens.claims_for(config, shop, body.get("sid") or session_tokens.new_admin_session()["sid"],
                                       sub=body.get("sub"))
    return jsonify(id_token=session_tokens.encode(config, claims), claims=claims)


@control_bp.get("/stores/<shop>/app_launch")
def control_app_launch(shop: str):  # type: ignore[no-untyped-def]
    """The framed URL the admin page would load for ``?path=/codes`` (fresh id_token and hmac)."""
    config = current_state().config
    path = request.args.get("path", "/")
    if not path.startswith("/"):
        raise InvalidInput("path must start with / (a path of the app, e.g. /codes)")
    with current_state().session() as db:
        checkout.get_store(db, shop)
        installation = db.scalar(select(Installation).where(Installation.shop == shop))
        if installation is None or not installation.installed:
            raise Conflict(f"the app is not installed on {shop}: the admin would offer to install it")
    url = launch_url(config, shop, path, session_tokens.new_admin_session())
    admin = url_for("embedded.app_page", shop=shop, app=config.app_handle, path=path.lstrip("/"))
    return jsonify(url=url, admin_url=admin)
