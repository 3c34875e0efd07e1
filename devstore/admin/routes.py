"""``POST /stores/<shop>/admin/api/<version>/graphql.json``: a store's Admin GraphQL endpoint over HTTP.

In order: the store (404), the token (401, Shopify's text), the API version (an unsupported one is
served by the oldest supported, named in ``X-Shopify-API-Version``), switchable faults (503, a slow
answer, ``THROTTLED``), the document (errors with HTTP 200), its cost against the store's leaky
bucket (``MAX_COST_EXCEEDED``, ``THROTTLED``), then execution in one locked session, with
``extensions.cost`` on every answer that was charged. The ``graphql_answer_lost`` fault holds an
answer back after all that, once its effects are committed. Every authenticated call is counted in
the store's usage (``usage.py``).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import select
from sqlalchemy.orm import Session

from devstore.admin.bucket import Buckets, ThrottleStatus
from devstore.admin.context import Context
from devstore.admin.executor import GraphQLRequest, Plan, Refused, ResolverBug, actual_cost, execute, plan
from devstore.admin.schema import admin_schema
from devstore.admin.usage import Usage
from devstore.models import Installation, Store, now
from devstore.state import State

log = logging.getLogger(__name__)

bp = Blueprint("admin_api", __name__)

TOKEN_HEADER = "X-Shopify-Access-Token"  # noqa: S105 (a header name, not a secret)
VERSION_HEADER = "X-Shopify-API-Version"
UNAUTHORIZED = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
THROTTLED_DOC = "https://shopify.dev/api/usage/rate-limits"
EXTENSION = "devstore_admin"


@dataclass
class AdminRuntime:
    """What the endpoint keeps between requests: the stores' buckets (tests replace ``buckets.clock``) and usage."""

    buckets: Buckets = field(default_factory=Buckets)
    usage: Usage = field(default_factory=Usage)


@bp.record_once
def _setup(setup: BlueprintSetupState) -> None:
    setup.app.extensions.setdefault(EXTENSION, AdminRuntime())


def admin_runtime() -> AdminRuntime:
    return current_app.extensions[EXTENSION]


@dataclass(frozen=True)
class Limits:
    shop: str
    size: float
    rate: float


class BadRequest(Exception):
    pass


# --- HTTP helpers -----------------------------------------------------------------------------------

def respond(body: Any, status: int, version: str, headers: dict[str, str] | None = None) -> Response:
    """JSON in the order it was built (Flask's ``jsonify`` would sort the keys)."""
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
    response.headers[VERSION_HEADER] = version
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def internal_error(version: str, status: int) -> Response:
    """Shopify's 5xx body, with the request id it asks developers to quote."""
    request_id = str(uuid.uuid4())
    body = {"errors": [{
        "message": f"Internal error. Looks like something went wrong on our end.\nRequest ID: {request_id} "
                   "(include this in support requests).",
        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}}]}
    return respond(body, status, version, {"X-Request-Id": request_id})


def cost_extension(requested: int, actual: int | None, status: ThrottleStatus) -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": status.as_json()}}


def throttled(requested: int, status: ThrottleStatus, version: str) -> Response:
    body = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": THROTTLED_DOC}}],
            "extensions": cost_extension(requested, None, status)}
    return respond(body, 200, version)


def served_version(asked: str, supported: tuple[str, ...]) -> str:
    """Shopify falls forward silently: an unsupported or malformed version gets the oldest supported one."""
    return asked if asked in supported else min(supported)


def read_request() -> GraphQLRequest:
    """The query, variables and operation name, from JSON or an ``application/graphql`` body."""
    if request.mimetype == "application/graphql":
        return GraphQLRequest(request.get_data(as_text=True))
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise BadRequest
    variables = body.get("variables")
    if isinstance(variables, str):  # some clients send the variables as a JSON string
        try:
            variables = json.loads(variables) if variables.strip() else None
        except ValueError as exc:
            raise BadRequest from exc
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest
    name = body.get("operationName")
    return GraphQLRequest(body["query"], variables, name if isinstance(name, str) else None)


# --- the store's side -------------------------------------------------------------------------------

def authenticate(session: Session, shop: str, token: str | None, moment: datetime) -> Installation | None:
    """The installation whose current, unexpired access token was presented, if any."""
    installation = session.scalar(select(Installation).where(Installation.shop == shop))
    if installation is None or not installation.installed or not installation.access_token or not token:
        return None
    if not hmac.compare_digest(installation.access_token.encode(), token.encode()):
        return None
    expires = installation.access_token_expires_at
    return installation if expires is None or expires > moment else None


def take_fault(store: Store, name: str) -> bool:
    """Use one of the store's switchable faults (``graphql_5xx: 2`` answers the next two calls with 503)."""
    faults = dict(store.faults or {})
    remaining = int(faults.get(name) or 0)
    if remaining <= 0:
        return False
    faults[name] = remaining - 1
    store.faults = faults  # a new dict, so SQLAlchemy writes the JSON column
    return True


def _throttle_fault(state: State, shop: str) -> bool:
    with state.session() as session:
        store = session.get(Store, shop)
        return store is not None and take_fault(store, "graphql_throttle")


def _run(state: State, limits: Limits, ready: Plan, moment: datetime, version: str) -> Response:
    """Execute an admitted call and give back what it did not spend."""
    runtime = admin_runtime()
    buckets = runtime.buckets
    schema = admin_schema()
    try:
        with state.session() as session:
            store = session.get(Store, limits.shop)
            installation = session.scalar(select(Installation).where(Installation.shop == limits.shop))
            data, errors = execute(schema, ready, Context(session, store, installation, moment))  # type: ignore[arg-type]
    except ResolverBug:
        log.exception("devstore admin API resolver failed", extra={"shop": limits.shop})
        buckets.refund(limits.shop, limits.size, limits.rate, ready.requested_cost)
        return internal_error(version, 500)
    spent = actual_cost(schema, ready, data)
    status = buckets.refund(limits.shop, limits.size, limits.rate, ready.requested_cost - spent)
    runtime.usage.add(limits.shop, points=spent)
    body: dict[str, Any] = {"data": data}
    if errors:
        body["errors"] = errors
    body["extensions"] = cost_extension(ready.requested_cost, spent, status)
    return respond(body, 200, version)


@bp.post("/stores/<shop>/admin/api/<version>/graphql.json")
def graphql(shop: str, version: str) -> Response:
    state: State = current_app.extensions["devstore"]
    served = served_version(version, state.config.api_versions)
    moment = now()
    with state.session() as session:
        store = session.get(Store, shop)
        if store is None:
            return respond({"errors": "Not Found"}, 404, served)
        if authenticate(session, shop, request.headers.get(TOKEN_HEADER), moment) is None:
            return respond(UNAUTHORIZED, 401, served)
        admin_runtime().usage.add(shop, requests=1)
        limits = Limits(shop, store.bucket_size, store.restore_rate)
        unavailable = take_fault(store, "graphql_5xx")
        slow = not unavailable and take_fault(store, "graphql_timeout")
        lost = not unavailable and take_fault(store, "graphql_answer_lost")
        delay = float((store.faults or {}).get("timeout_seconds", 30))
    if unavailable:
        return internal_error(served, 503)
    if slow:
        time.sleep(delay)  # outside the state lock: a slow answer must not stall the other stores
    response = _answer(state, limits, moment, served)
    if lost:
        # The call is done and its session committed: the store accepted it, only the caller never hears.
        time.sleep(delay)
    return response


def _answer(state: State, limits: Limits, moment: datetime, version: str) -> Response:
    """Parse and price an authenticated call, admit it against the bucket, then run it."""
    try:
        ready = plan(admin_schema(), read_request())
    except BadRequest:
        return respond({"errors": {"query": "Required parameter missing or invalid"}}, 400, version)
    except Refused as refused:
        return respond({"errors": refused.errors}, 200, version)
    runtime = admin_runtime()
    buckets, shop = runtime.buckets, limits.shop
    if _throttle_fault(state, shop):
        runtime.usage.add(shop, throttled=1)
        return throttled(ready.requested_cost, buckets.status(shop, limits.size, limits.rate), version)
    admitted, status = buckets.take(shop, limits.size, limits.rate, ready.requested_cost)
    if not admitted:
        log.info("devstore admin API throttled", extra={"shop": shop})
        runtime.usage.add(shop, throttled=1)
        return throttled(ready.requested_cost, status, version)
    if ready.problems:  # charged like Shopify charges a call its analysis refuses
        runtime.usage.add(shop, points=ready.requested_cost)
        return respond({"data": None, "errors": ready.problems,
                        "extensions": cost_extension(ready.requested_cost, ready.requested_cost, status)}, 200, version)
    return _run(state, limits, ready, moment, version)
