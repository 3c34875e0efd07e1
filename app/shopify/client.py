"""The one Admin GraphQL client: ``requests``, explicit timeouts, a pinned API version, typed errors.

Documents live as named ``.graphql`` files beside this module (validated against Shopify's schema
by a test). Errors are sorted into what is worth retrying (timeouts, 5xx, throttling) and what is
not (bad documents, user errors, a revoked token), so that jobs retry only the transient ones.

Throttling: given the shop's bucket mirror (``app.shopify.throttle``), every call first reserves its
estimated cost there. A call waits in place only as long as the bucket needs, and a client (one per
job) sleeps at most ``wait_budget`` seconds over all its calls: a job of many calls must not hold a
worker for long while another shop's work waits. A longer wait raises ``Throttled`` before anything
is sent, and the job hands itself back to rq for that long (``workers.deferral``). ``THROTTLED``
answers and 429s are waited out the same way, so they never reach a caller as anything but ``Throttled``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from functools import cache
from pathlib import Path
from typing import Any

import requests

from app.config import Settings
from app.errors import OnceCodeError
from app.shopify.throttle import ShopBuckets

log = logging.getLogger(__name__)

DOCUMENTS = Path(__file__).parent / "graphql"
TIMEOUT = (3.05, 20)  # (connect, read) seconds
RETRY_DELAYS = (0.5, 1.5)  # in-call retries for 5xx/timeouts; longer waits belong to rq's Retry
MAX_INLINE_WAIT = 2.0  # seconds a client (a job) may sleep for the bucket in all; beyond that it is deferred
THROTTLED_ANSWERS = 5  # THROTTLED/429 answers one call waits out before giving up to rq
MIN_THROTTLED_WAIT = 0.1  # after a THROTTLED answer, even one whose figures say "go", pause this long
DEFAULT_COST = {"query": 50, "mutation": 10}  # until Shopify has told us a document's requested cost


class AdminAPIError(OnceCodeError):
    status = 502
    transient = False


class AdminUnavailable(AdminAPIError):
    """Timeout, connection failure or 5xx from Shopify."""

    transient = True


class Throttled(AdminAPIError):
    """Shopify's leaky bucket is empty for this shop; ``retry_after`` is how long it needs."""

    transient = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessDenied(AdminAPIError):
    """401/403: the token was revoked (uninstall) or lacks a scope. Retrying will not help."""


class GraphQLErrors(AdminAPIError):
    """Top-level ``errors``: the document or its variables are wrong."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("message", e)) for e in errors))
        self.errors = errors


class UserErrors(AdminAPIError):
    """A mutation's ``userErrors``: Shopify understood and refused (e.g. ``TAKEN``)."""

    def __init__(self, operation: str, errors: list[dict[str, Any]]) -> None:
        detail = "; ".join(f"{'.'.join(e.get('field') or [])}: {e.get('message')}" for e in errors)
        super().__init__(f"{operation} refused: {detail}")
        self.operation = operation
        self.errors = errors

    @property
    def codes(self) -> set[str]:
        return {e["code"] for e in self.errors if e.get("code")}


@cache
def document(name: str) -> str:
    """The text of ``graphql/<name>.graphql``."""
    return (DOCUMENTS / f"{name}.graphql").read_text()


class AdminClient:
    """Admin GraphQL for one shop. Build one per job: it holds that shop's token.

    ``bucket`` is the shared mirror of Shopify's cost buckets; without it (tests, one-off scripts)
    the client still waits out short ``THROTTLED`` answers but cannot see them coming.
    ``wait_budget`` is how long the client may sleep for the bucket over its whole life.
    """

    def __init__(self, settings: Settings, shop: str, access_token: str,
                 session: requests.Session | None = None, bucket: ShopBuckets | None = None,
                 wait_budget: float = MAX_INLINE_WAIT) -> None:
        self.shop = shop
        self.version = settings.shopify_api_version
        self.url = f"{settings.store_url(shop)}/admin/api/{self.version}/graphql.json"
        self._headers = {"X-Shopify-Access-Token": access_token, "Content-Type": "application/json",
                         "Accept": "application/json"}
        self._http = session or requests.Session()
        self.bucket = bucket
        self.wait_budget = wait_budget
        self.waited = 0.0  # seconds slept for the bucket so far, over every call
        self.last_cost: dict[str, Any] | None = None

    def query(self, name: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the named document and return its ``data``."""
        body = self._paced(name, {"query": document(name), "variables": variables or {}})
        errors = body.get("errors")
        if errors:
            raise GraphQLErrors(errors)
        return body.get("data") or {}

    def mutate(self, name: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run the named mutation and return its payload, raising ``UserErrors`` if it has any."""
        payload = self.query(name, variables).get(name) or {}
        if payload.get("userErrors"):
            raise UserErrors(name, payload["userErrors"])
        return payload

    def wait_for(self, points: float) -> float:
        """Seconds until the shop's bucket will hold ``points`` (0 without a bucket mirror): for a job to
        decide, before it starts on a batch of calls, whether to wait for them elsewhere."""
        return self.bucket.wait_for(self.shop, points) if self.bucket is not None else 0.0

    def _paced(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` within the shop's bucket: an answer that is not THROTTLED, or ``Throttled``."""
        cost = self._estimate(name)
        for attempt in range(1, THROTTLED_ANSWERS + 1):
            self._reserve(name, cost)
            try:
                answer = self._post(body)
            except Throttled as exc:  # HTTP 429: nothing to learn about the bucket but the wait
                wait = exc.retry_after
            else:
                self._observe(name, answer)
                if not _is_throttled(answer):
                    return answer
                wait = self._retry_after()
                cost = int((self.last_cost or {}).get("requestedQueryCost") or cost)
            if attempt == THROTTLED_ANSWERS or self.waited + wait > self.wait_budget:
                raise Throttled(f"{name} throttled for {self.shop} ({attempt} answers)", wait)
            log.info("admin API call throttled, waiting", extra={"shop": self.shop, "reason": f"{wait:.2f} s"})
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.waited += seconds

    def _estimate(self, name: str) -> int:
        default = DEFAULT_COST["mutation" if _is_mutation(name) else "query"]
        return self.bucket.estimate(name, default) if self.bucket is not None else default

    def _reserve(self, name: str, cost: int) -> None:
        """Take ``cost`` from the bucket, sleeping while the wait fits what is left of the budget.

        Raises ``Throttled`` without sending anything when the bucket needs longer than that.
        """
        if self.bucket is None:
            return
        while (wait := self.bucket.reserve(self.shop, cost)) > 0:
            if self.waited + wait > self.wait_budget:
                raise Throttled(f"{name} would overdraw the bucket of {self.shop}", wait)
            self._sleep(wait)

    def _observe(self, name: str, answer: dict[str, Any]) -> None:
        self.last_cost = (answer.get("extensions") or {}).get("cost")
        if self.bucket is None or not self.last_cost:
            return
        self.bucket.observe(self.shop, self.last_cost.get("throttleStatus") or {})
        requested = self.last_cost.get("requestedQueryCost")
        if isinstance(requested, int | float) and requested > 0:
            self.bucket.remember(name, int(requested))

    def _retry_after(self) -> float:
        """Seconds until the last THROTTLED call would fit: (requested - available) / restore rate."""
        cost = self.last_cost or {}
        status = cost.get("throttleStatus") or {}
        wanted = float(cost.get("requestedQueryCost") or DEFAULT_COST["mutation"])
        available = float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 50)
        return max(MIN_THROTTLED_WAIT, (wanted - available) / rate)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                response = self._http.post(self.url, json=body, headers=self._headers, timeout=TIMEOUT)
            except requests.RequestException as exc:
                problem: AdminAPIError = AdminUnavailable(f"{self.shop}: {type(exc).__name__}")
            else:
                if response.status_code in (401, 403):
                    raise AccessDenied(f"{self.shop} answered {response.status_code}: token revoked or scope missing")
                if response.status_code == 429:
                    raise Throttled(f"{self.shop} answered 429", _retry_after_header(response))
                if response.status_code < 500:
                    self._check_version(response)
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise AdminAPIError(f"{self.shop} answered {response.status_code} without JSON") from exc
                problem = AdminUnavailable(f"{self.shop} answered {response.status_code}")
            if delay is None:
                raise problem
            log.info("admin API call retried", extra={"shop": self.shop, "reason": str(problem),
                                                      "status": attempt + 1})
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _check_version(self, response: requests.Response) -> None:
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self.version:
            # Shopify serves the oldest supported version when ours is unsupported: say so loudly.
            log.warning("Shopify served API %s instead of %s: update SHOPIFY_API_VERSION", served, self.version,
                        extra={"shop": self.shop})


def _is_throttled(answer: dict[str, Any]) -> bool:
    return any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in answer.get("errors") or ()
               if isinstance(e, dict))


@cache
def _is_mutation(name: str) -> bool:
    return re.search(r"^\s*mutation\b", document(name), re.MULTILINE) is not None


def _retry_after_header(response: requests.Response) -> float:
    """Seconds from a 429's ``Retry-After`` (Shopify sends ``2.0``); 1 s when absent or not a number."""
    try:
        seconds = float(response.headers.get("Retry-After") or 1.0)
    except ValueError:  # an HTTP date, or garbage: not worth failing the job over
        return 1.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 1.0
