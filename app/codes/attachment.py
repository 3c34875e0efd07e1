"""What an issued code leaves on its customer, so that the merchant's emails, Flow and theme can use it.

Every code is written to the customer as three app-owned metafields (namespace ``$app``, which
Shopify resolves to ``app--<app id>``) named after the program's kind, and the customer gets a tag
per kind:

| kind | metafields | tag |
|---|---|---|
| welcome | ``welcome_code``, ``welcome_code_expires_at``, ``welcome_code_url`` | ``oncecode-welcome`` |
| referral_friend | ``friend_code`` … | ``oncecode-friend`` |
| referral_reward | ``reward_code`` … | ``oncecode-reward`` |
| manual | ``manual_code`` … | ``oncecode-manual`` |

The code is a ``single_line_text_field``, the expiry a ``date_time`` (absent for a code that never
expires) and the link a ``url``: typed values, so that customer segments can filter on them, which
Shopify allows for text, date and number metafields with a definition. An app-owned namespace is
private to the app until a definition grants access, so setup creates one definition per metafield:
read-only for the merchant in the admin, public to the Storefront API, readable in customer
accounts. (Shopify documents Liquid access to app-owned metafields as limited to the owning app's
templates and blocks; the tag is what a merchant's Flow or email can always rely on.)

A customer's referral link (``app.codes.referrals``) is one more metafield, ``referral_link`` (a
``url``), with a definition like the others; it has no tag.

Metafields of several customers go in one ``metafieldsSet`` (up to 25 per call), which is how a
batch of codes spends one mutation on them instead of one each; tags cannot be batched
(``tagsAdd`` takes one customer), and come last so that a Flow triggered by the tag finds the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.shopify.client import AdminClient, UserErrors

NAMESPACE = "$app"
SLUGS = {"welcome": "welcome", "referral_friend": "friend", "referral_reward": "reward", "manual": "manual"}
LABELS = {"welcome": "Welcome", "referral_friend": "Referred friend", "referral_reward": "Referral reward",
          "manual": "OnceCode"}
REFERRAL_LINK_KEY = "referral_link"
MAX_METAFIELDS_PER_CALL = 25  # Shopify's limit for metafieldsSet
ACCESS = {"admin": "MERCHANT_READ", "storefront": "PUBLIC_READ", "customerAccount": "READ"}


@dataclass(frozen=True)
class CodeFields:
    """The metafield keys one program kind writes."""

    code: str
    expires_at: str
    url: str


def fields_for(kind: str) -> CodeFields:
    slug = SLUGS[kind]
    return CodeFields(code=f"{slug}_code", expires_at=f"{slug}_code_expires_at", url=f"{slug}_code_url")


def customer_tag(kind: str) -> str:
    return f"oncecode-{SLUGS[kind]}"


def customer_gid(shopify_customer_id: int) -> str:
    return f"gid://shopify/Customer/{shopify_customer_id}"


def metafield_inputs(kind: str, owner: str, code: str, expires_at: str | None, url: str) -> list[dict[str, Any]]:
    """The ``MetafieldsSetInput``s that put one code on its customer (``owner`` is the customer's gid)."""
    keys = fields_for(kind)
    inputs = [{"ownerId": owner, "namespace": NAMESPACE, "key": keys.code, "type": "single_line_text_field",
               "value": code}]
    if expires_at is not None:
        inputs.append({"ownerId": owner, "namespace": NAMESPACE, "key": keys.expires_at, "type": "date_time",
                       "value": expires_at})
    inputs.append({"ownerId": owner, "namespace": NAMESPACE, "key": keys.url, "type": "url", "value": url})
    return inputs


def definitions() -> list[dict[str, Any]]:
    """Every ``MetafieldDefinitionInput`` the app needs on a store."""
    found = []
    for kind, label in LABELS.items():
        keys = fields_for(kind)
        for key, type_name, name, what in (
                (keys.code, "single_line_text_field", f"{label} code", "The customer's own single-use code"),
                (keys.expires_at, "date_time", f"{label} code expires", "When the code stops working"),
                (keys.url, "url", f"{label} code link", "Opens the store with the code in the cart")):
            found.append({"name": name, "namespace": NAMESPACE, "key": key, "type": type_name,
                          "ownerType": "CUSTOMER", "description": f"{what} (OnceCode)", "access": ACCESS})
    found.append(referral_link_definition())
    return found


def referral_link_definition() -> dict[str, Any]:
    """The definition of a customer's ``referral_link`` metafield."""
    return {"name": "Referral link", "namespace": NAMESPACE, "key": REFERRAL_LINK_KEY, "type": "url",
            "ownerType": "CUSTOMER", "access": ACCESS,
            "description": "The customer's own link to share with friends (OnceCode)"}


def create_definitions(client: AdminClient) -> int:
    """Create the definitions missing on the store; one already there (``TAKEN``) is fine. Returns how many were new."""
    return sum(create_definition(client, definition) for definition in definitions())


def create_definition(client: AdminClient, definition: dict[str, Any]) -> bool:
    """Create one definition; ``False`` when the store has it already (``TAKEN``)."""
    try:
        client.mutate("metafieldDefinitionCreate", {"definition": definition})
    except UserErrors as exc:
        if exc.codes != {"TAKEN"}:
            raise
        return False
    return True
