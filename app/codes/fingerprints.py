"""Keyed fingerprints of customers' emails, for the self-referral check: OnceCode stores no emails.

A fingerprint is HMAC-SHA256, keyed with ``EMAIL_HASH_KEY``, of the email normalised the way a person
gets "another" address for free: lower case, trimmed, and for Gmail (``gmail.com`` and its old name
``googlemail.com``) without the dots and the ``+tag`` of the local part, which Gmail ignores. Other
providers' ``+tag`` is kept: many deliver it to a different mailbox, or not at all.

A plain hash of an email is no protection (emails are guessable, so a table of them can be hashed and
matched); a keyed one can only be compared by whoever holds the key.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy.orm import Session

from app.codes.issuance import remember_customer

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def normalise_email(email: object) -> str | None:
    """The email as compared for self-referral, or None when it is not an address (empty, no ``@``)."""
    if not isinstance(email, str):
        return None
    text = email.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in text):
        return None
    if domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
        if not local:
            return None
    return f"{local}@{domain}"


def email_fingerprint(key: str, email: object) -> str | None:
    """HMAC-SHA256 (hex) of the normalised email under ``key``; None when there is no usable email."""
    normalised = normalise_email(email)
    if normalised is None:
        return None
    return hmac.new(key.encode(), normalised.encode(), hashlib.sha256).hexdigest()


def remember_email(session: Session, shop_id: int, shopify_customer_id: int, key: str, email: object) -> bool:
    """Keep the customer's email fingerprint (recording the customer if new); True when one was set.

    No usable email (Shopify leaves it empty without protected-data access) keeps the one already
    stored: an empty field says nothing about the customer's address. Setting the same value again is
    a no-op, so a replayed webhook changes nothing.
    """
    fingerprint = email_fingerprint(key, email)
    if fingerprint is None:
        return False
    customer, _ = remember_customer(session, shop_id, shopify_customer_id)
    customer.email_hash = fingerprint
    return True
