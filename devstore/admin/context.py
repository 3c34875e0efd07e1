"""Per-request context of a GraphQL call, global ids and the errors resolvers raise."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from graphql import GraphQLError
from sqlalchemy.orm import Session

from devstore.models import Installation, Store

GID_RE = re.compile(r"^gid://shopify/(?P<type>[A-Za-z]+)/(?P<id>\d+)(?:\?.*)?$")
ACCESS_SCOPES_DOC = "https://shopify.dev/api/usage/access-scopes"


@dataclass
class Context:
    """The store being called, the app calling it, and the moment of the call (one for the whole request)."""

    session: Session
    store: Store
    installation: Installation
    now: datetime

    @property
    def shop(self) -> str:
        return self.store.domain

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(s.strip() for s in (self.installation.scopes or "").split(",") if s.strip())

    def has_scope(self, scope: str) -> bool:
        """Shopify's rule: a ``write_x`` grant includes ``read_x``."""
        if scope in self.scopes:
            return True
        return scope.startswith("read_") and "write_" + scope.removeprefix("read_") in self.scopes

    def require(self, scope: str | None, field: str) -> None:
        """Raise Shopify's ``ACCESS_DENIED`` field error unless the app was granted ``scope``."""
        if scope is not None and not self.has_scope(scope):
            raise access_denied(field, scope)

    @property
    def app_namespace(self) -> str:
        """The app-reserved metafield namespace (``$app``), ``app--<client id>``."""
        return f"app--{self.installation.client_id}"


def gid(resource: str, resource_id: int) -> str:
    return f"gid://shopify/{resource}/{resource_id}"


def parse_gid(value: str) -> tuple[str, int]:
    """``gid://shopify/Customer/1`` → ``("Customer", 1)``; Shopify's error for anything else."""
    match = GID_RE.match(value or "")
    if match is None:
        raise GraphQLError(f"Invalid global id '{value}'", extensions={"code": "INVALID_GLOBAL_ID"})
    return match["type"], int(match["id"])


def id_of(value: str, *types: str) -> int | None:
    """The numeric id in ``value`` if it names one of ``types``, else None (malformed ids raise)."""
    kind, number = parse_gid(value)
    return number if kind in types else None


def access_denied(field: str, scope: str) -> GraphQLError:
    required = f"`{scope}` access scope."
    return GraphQLError(f"Access denied for {field} field. Required access: {required}",
                        extensions={"code": "ACCESS_DENIED", "documentation": ACCESS_SCOPES_DOC,
                                    "requiredAccess": required})

