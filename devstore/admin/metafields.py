"""``metafieldsSet``, ``metafieldsDelete`` and ``metafieldDefinitionCreate``.

``metafieldsSet`` is an atomic upsert keyed by owner + namespace + key: every input is checked first,
and one refusal writes nothing. ``$app`` / ``$app:x`` namespaces are the app's reserved ones
(``app--<client id>`` / ``app--<client id>--x``); another app's reserved namespace is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from graphql import GraphQLError
from sqlalchemy import delete, func, select

from devstore.admin.context import Context, parse_gid
from devstore.admin.objects import Plain
from devstore.admin.owners import OWNER_TYPES, canonical_owner, foreign_app_namespace, owner_exists, resolve_namespace
from devstore.admin.views import Info, MetafieldDefinitionView, MetafieldView, compare_digest
from devstore.models import Metafield, MetafieldDefinition
from devstore.state import State

MAX_INPUTS = 25
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
RESERVED_NAMESPACES = {"shopify_standard", "protected", "shopify-l10n-fields"}
REFERENCE_TYPES = {f"{name}_reference" for name in (
    "collection", "customer", "company", "file", "metaobject", "mixed", "order", "page", "product", "variant",
    "article", "product_taxonomy_value")}
JSON_TYPES = {"json", "money", "dimension", "volume", "weight", "rating", "link", "rich_text_field"}
SCALAR_TYPES = {"boolean", "color", "date", "date_time", "id", "multi_line_text_field", "number_decimal",
                "number_integer", "single_line_text_field", "url"} | JSON_TYPES | REFERENCE_TYPES
LIST_TYPES = {f"list.{name}" for name in SCALAR_TYPES - {"boolean", "json", "money", "multi_line_text_field",
                                                         "rich_text_field", "id"}}
TYPES = SCALAR_TYPES | LIST_TYPES
DEFINITION_OWNER_TYPES = {"CUSTOMER", "ORDER", "DISCOUNT", "SHOP"}
OWNER_LABELS = {"CUSTOMER": "Customer", "ORDER": "Order", "DISCOUNT": "Discount", "SHOP": "Shop"}
STALE = "The resource has been updated since it was loaded. Try again with an updated `compareDigest` value."
FOREIGN = "Access to this namespace and key on Metafields for this resource type is not allowed."


# --- values by type ---------------------------------------------------------------------------------

def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None and -(2**63) <= int(text) < 2**63


def _is_decimal(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except InvalidOperation:
        return False


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _is_date_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return len(text) >= 19 and text[10] == "T"


def _is_url(text: str) -> bool:
    parts = urlsplit(text)
    return (parts.scheme in ("http", "https") and bool(parts.netloc)) or parts.scheme in ("mailto", "sms", "tel")


SCALAR_CHECKS: dict[str, tuple[Any, str]] = {
    "number_integer": (_is_int, "Value must be an integer."),
    "number_decimal": (_is_decimal, "Value must be a decimal."),
    "boolean": (lambda v: v in ("true", "false"), "Value must be true or false."),
    "color": (lambda v: re.fullmatch(r"#[0-9A-Fa-f]{6}", v) is not None, "Value must be a hex color code."),
    "date": (_is_date, "Value must be in YYYY-MM-DD format."),
    "date_time": (_is_date_time, "Value must be in YYYY-MM-DDTHH:MM:SS format."),
    "url": (_is_url, "Value must be a valid URL."),
    "single_line_text_field": (lambda v: "\n" not in v and "\r" not in v, "Value must be a single line text string."),
}


def value_problem(type_name: str, value: str) -> str | None:
    """Why ``value`` is not a valid ``type_name`` metafield value, or None if it is."""
    if type_name.startswith("list."):
        try:
            items = json.loads(value)
        except ValueError:
            return "Value is invalid JSON."
        if not isinstance(items, list):
            return "Value must be a JSON array."
        base = type_name.removeprefix("list.")
        return next((problem for item in items
                     if (problem := value_problem(base, item if isinstance(item, str) else json.dumps(item)))), None)
    if type_name in JSON_TYPES:
        return None if _is_json(value) else "Value is invalid JSON."
    if type_name in REFERENCE_TYPES:
        try:
            parse_gid(value)
        except GraphQLError:
            return "Value must be a global id."
        return None
    check, message = SCALAR_CHECKS.get(type_name, (lambda v: True, ""))
    return None if check(value) else message


def name_problem(label: str, value: str, low: int, high: int) -> tuple[str, str] | None:
    """Shopify's length and character rules for a namespace or key: (code, message) or None."""
    if len(value) < low:
        return "TOO_SHORT", f"{label} is too short (minimum is {low} characters)"
    if len(value) > high:
        return "TOO_LONG", f"{label} is too long (maximum is {high} characters)"
    if NAME_RE.match(value) is None:
        return "INVALID", f"{label} contains one or more invalid characters."
    return None


# --- metafieldsSet ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Write:
    owner_id: str
    namespace: str
    key: str
    type: str
    value: str


def _set_error(path: list[str], message: str, code: str | None) -> Plain:
    return Plain("MetafieldsSetUserError", field=path, message=message, code=code, elementIndex=None)


def _definition(ctx: Context, owner_type: str, namespace: str, key: str) -> MetafieldDefinition | None:
    return ctx.session.scalar(select(MetafieldDefinition).where(
        MetafieldDefinition.shop == ctx.shop, MetafieldDefinition.owner_type == owner_type,
        MetafieldDefinition.namespace == namespace, MetafieldDefinition.key == key))


def _existing(ctx: Context, owner_id: str, namespace: str, key: str) -> Metafield | None:
    return ctx.session.scalar(select(Metafield).where(Metafield.shop == ctx.shop, Metafield.owner_id == owner_id,
                                                      Metafield.namespace == namespace, Metafield.key == key))


def _owner(ctx: Context, raw: str, path: list[str], errors: list[Plain]) -> tuple[str, str] | None:
    """(stored owner id, MetafieldOwnerType) of ``raw``, or None after recording why not."""
    try:
        resource, number = parse_gid(raw)
    except GraphQLError:
        errors.append(_set_error(path + ["ownerId"], f"Invalid global id '{raw}'", "INVALID"))
        return None
    if resource not in OWNER_TYPES or not owner_exists(ctx, resource, number):
        errors.append(_set_error(path + ["ownerId"], "Owner does not exist.", "INVALID"))
        return None
    owner_type, scope = OWNER_TYPES[resource]
    if scope is not None and not ctx.has_scope(scope):
        errors.append(_set_error(path + ["ownerId"], f"Access denied: writing this owner's metafields needs "
                                 f"the `{scope}` access scope.", "APP_NOT_AUTHORIZED"))
        return None
    return canonical_owner(resource, number), owner_type


def check_input(ctx: Context, index: int, item: dict[str, Any], errors: list[Plain]) -> Write | None:
    """One ``MetafieldsSetInput`` as a write, or None after recording its user errors."""
    path = ["metafields", str(index)]
    owner = _owner(ctx, item["ownerId"], path, errors)
    namespace, key = resolve_namespace(ctx, item.get("namespace")), item["key"]
    for label, value, low, high in (("Namespace", namespace, 3, 255), ("Key", key, 2, 64)):
        if (problem := name_problem(label, value, low, high)) is not None:
            errors.append(_set_error(path + [label.lower()], problem[1], problem[0]))
            return None
    if namespace in RESERVED_NAMESPACES:
        errors.append(_set_error(path + ["namespace"], f"Namespace {namespace} is a reserved namespace", None))
        return None
    if foreign_app_namespace(ctx, namespace):
        errors.append(_set_error(path, FOREIGN, "APP_NOT_AUTHORIZED"))
        return None
    if owner is None:
        return None
    definition = _definition(ctx, owner[1], namespace, key)
    type_name = item.get("type") or (definition.type if definition else None)
    if type_name is None:
        errors.append(_set_error(path + ["type"], "Type can't be blank", "BLANK"))
        return None
    if type_name not in TYPES:
        errors.append(_set_error(path + ["type"], f"Type '{type_name}' is not a valid metafield type", "INVALID_TYPE"))
        return None
    if definition is not None and definition.type != type_name:
        errors.append(_set_error(path + ["type"], f"Type must be '{definition.type}', the type of the definition "
                                 f"for {namespace}.{key}", "INVALID_TYPE"))
        return None
    value = item["value"]
    problem = "Value can't be blank" if value == "" else value_problem(type_name, value)
    if problem is not None:
        errors.append(_set_error(path + ["value"], problem, "BLANK" if value == "" else "INVALID_VALUE"))
        return None
    if "compareDigest" in item:
        existing = _existing(ctx, owner[0], namespace, key)
        wanted = item["compareDigest"]
        if (existing is None) != (wanted is None) or (existing is not None and compare_digest(existing) != wanted):
            errors.append(_set_error(path, STALE, "STALE_OBJECT"))
            return None
    return Write(owner[0], namespace, key, type_name, value)


def upsert(ctx: Context, write: Write) -> Metafield:
    row = _existing(ctx, write.owner_id, write.namespace, write.key)
    if row is None:
        row = Metafield(id=State.new_id(), shop=ctx.shop, owner_id=write.owner_id, namespace=write.namespace,
                        key=write.key, created_at=ctx.now)
        ctx.session.add(row)
    row.type, row.value, row.updated_at = write.type, write.value, ctx.now
    ctx.session.flush()
    return row


def metafields_set(root: Any, info: Info, metafields: list[dict[str, Any]]) -> Plain:
    """Set up to 25 metafields, all or none."""
    ctx: Context = info.context
    if len(metafields) > MAX_INPUTS:
        error = _set_error(["metafields"], f"Exceeded the maximum metafields input limit of {MAX_INPUTS}.",
                           "LESS_THAN_OR_EQUAL_TO")
        return Plain("MetafieldsSetPayload", metafields=None, userErrors=[error])
    errors: list[Plain] = []
    writes = [check_input(ctx, index, item, errors) for index, item in enumerate(metafields)]
    if errors:
        return Plain("MetafieldsSetPayload", metafields=[], userErrors=errors)
    rows = [upsert(ctx, write) for write in writes if write is not None]
    return Plain("MetafieldsSetPayload", metafields=[MetafieldView(ctx, row) for row in rows], userErrors=[])


# --- metafieldsDelete -------------------------------------------------------------------------------

def _delete_error(path: list[str], message: str) -> Plain:
    return Plain("UserError", field=path, message=message)


def _identified(ctx: Context, index: int, item: dict[str, Any], errors: list[Plain]) -> tuple[str, str, str] | None:
    """(stored owner id, namespace, key) of one ``MetafieldIdentifierInput``; None for an owner that is not
    this store's (its metafield cannot exist) or after recording why the identifier is refused."""
    path = ["metafields", str(index)]
    try:
        resource, number = parse_gid(item["ownerId"])
    except GraphQLError:
        errors.append(_delete_error(path + ["ownerId"], f"Invalid global id '{item['ownerId']}'"))
        return None
    namespace = resolve_namespace(ctx, item["namespace"])
    if foreign_app_namespace(ctx, namespace):
        errors.append(_delete_error(path + ["namespace"], FOREIGN))
        return None
    if resource not in OWNER_TYPES or not owner_exists(ctx, resource, number):
        return None
    scope = OWNER_TYPES[resource][1]
    if scope is not None and not ctx.has_scope(scope):
        errors.append(_delete_error(path + ["ownerId"], f"Access denied: deleting this owner's metafields needs "
                                    f"the `{scope}` access scope."))
        return None
    return canonical_owner(resource, number), namespace, item["key"]


def metafields_delete(root: Any, info: Info, metafields: list[dict[str, Any]]) -> Plain:
    """Delete metafields by owner, namespace and key, all or none. As Shopify documents it, an identifier
    whose metafield does not exist is not an error: its entry in ``deletedMetafields`` is null."""
    ctx: Context = info.context
    if not metafields:
        return Plain("MetafieldsDeletePayload", deletedMetafields=None,
                     userErrors=[_delete_error(["metafields"], "At least one identifier must be specified.")])
    errors: list[Plain] = []
    found = [_identified(ctx, index, item, errors) for index, item in enumerate(metafields)]
    if errors:
        return Plain("MetafieldsDeletePayload", deletedMetafields=None, userErrors=errors)
    deleted: list[Plain | None] = []
    for target in found:
        row = None if target is None else _existing(ctx, *target)
        if row is None:
            deleted.append(None)
            continue
        ctx.session.execute(delete(Metafield).where(Metafield.id == row.id))
        deleted.append(Plain("MetafieldIdentifier", ownerId=row.owner_id, namespace=row.namespace, key=row.key))
    ctx.session.flush()
    return Plain("MetafieldsDeletePayload", deletedMetafields=deleted, userErrors=[])


# --- metafieldDefinitionCreate ----------------------------------------------------------------------

def _definition_error(path: list[str], message: str, code: str) -> Plain:
    return Plain("MetafieldDefinitionCreateUserError", field=path, message=message, code=code,
                 elementIndex=None, elementKey=None)


def _default_access(ctx: Context, namespace: str, given: dict[str, Any] | None) -> dict[str, str]:
    """Access as stored: what was asked for, else devstore's defaults (app-reserved: private to the app)."""
    app_owned = namespace.startswith(ctx.app_namespace)
    given = given or {}
    return {"admin": given.get("admin") or ("PRIVATE" if app_owned else "PUBLIC_READ_WRITE"),
            "storefront": given.get("storefront") or "NONE",
            "customerAccount": given.get("customerAccount") or "NONE"}


def check_definition(ctx: Context, data: dict[str, Any], namespace: str) -> list[Plain]:
    """Shopify's refusals for a definition input (devstore adds its own for what it cannot store)."""
    errors: list[Plain] = []
    path = ["definition"]
    if not (data.get("name") or "").strip():
        errors.append(_definition_error(path + ["name"], "Name can't be blank", "BLANK"))
    for label, value, low, high in (("Namespace", namespace, 3, 255), ("Key", data["key"], 2, 64)):
        if (problem := name_problem(label, value, low, high)) is not None:
            code = "INVALID_CHARACTER" if problem[0] == "INVALID" else problem[0]
            errors.append(_definition_error(path + [label.lower()], problem[1], code))
    if data["type"] not in TYPES:
        errors.append(_definition_error(path + ["type"], "Type is not included in the list", "INCLUSION"))
    if data["ownerType"] not in DEFINITION_OWNER_TYPES:
        errors.append(_definition_error(path + ["ownerType"], f"devstore does not support definitions for "
                                        f"{data['ownerType']} owners", "INVALID"))
    if (data.get("access") or {}).get("admin") and not namespace.startswith(ctx.app_namespace):
        errors.append(_definition_error(path + ["access", "admin"], "Admin access can only be specified on "
                                        "metafield definitions that have an app namespace.",
                                        "ADMIN_ACCESS_INPUT_NOT_ALLOWED"))
    if foreign_app_namespace(ctx, namespace):
        errors.append(_definition_error(path + ["namespace"], FOREIGN, "INVALID"))
    for name in ("validations", "capabilities", "constraints"):
        if data.get(name):
            errors.append(_definition_error(path + [name], f"devstore does not support {name}", "INVALID"))
    return errors


def metafield_definition_create(root: Any, info: Info, definition: dict[str, Any]) -> Plain:
    ctx: Context = info.context
    namespace = resolve_namespace(ctx, definition.get("namespace"))
    errors = check_definition(ctx, definition, namespace)
    owner_type, key = definition["ownerType"], definition["key"]
    if not errors and _definition(ctx, owner_type, namespace, key) is not None:
        label = OWNER_LABELS.get(owner_type, owner_type.title())
        errors.append(_definition_error(["definition", "key"], f"Key is in use for {label} metafields on the "
                                        f"'{namespace}' namespace.", "TAKEN"))
    if errors:
        return Plain("MetafieldDefinitionCreatePayload", createdDefinition=None, userErrors=errors)
    pinned = None
    if definition.get("pin"):
        pinned = 1 + (ctx.session.scalar(select(func.count()).select_from(MetafieldDefinition).where(
            MetafieldDefinition.shop == ctx.shop, MetafieldDefinition.owner_type == owner_type,
            MetafieldDefinition.pinned_position.is_not(None))) or 0)
    row = MetafieldDefinition(id=State.new_id(), shop=ctx.shop, owner_type=owner_type, namespace=namespace, key=key,
                              name=definition["name"], type=definition["type"],
                              description=definition.get("description"), pinned_position=pinned,
                              access=_default_access(ctx, namespace, definition.get("access")))
    ctx.session.add(row)
    ctx.session.flush()
    return Plain("MetafieldDefinitionCreatePayload", createdDefinition=MetafieldDefinitionView(ctx, row), userErrors=[])
