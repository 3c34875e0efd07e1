"""Stored offline tokens: used while fresh, refreshed exactly once when not, encrypted at rest."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
from cryptography.fernet import Fernet, InvalidToken

from app.db import utcnow
from app.errors import OnceCodeError
from app.models import Shop
from app.shopify import oauth
from app.shopify.tokens import ShopNotInstalled, TokenCipher, access_token_for
from tests.conftest import API_KEY, API_SECRET, TOKEN_KEY
from tests.helpers import make_shop

TOKEN_URL = "https://demo.myshopify.com/admin/oauth/access_token"
REFRESHED = json.loads(Path("/work/shared/reference/samples/oauth-access-token-refresh.json").read_text())
NEW_ACCESS = REFRESHED["access_token"]
NEW_REFRESH = REFRESHED["refresh_token"]


def token_for(rt, shop_id: int) -> str:  # type: ignore[no-untyped-def]
    return access_token_for(shop_id, db=rt.db, redis=rt.redis, settings=rt.settings, cipher=rt.cipher)


def reload(db, shop_id: int) -> Shop:  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.get(Shop, shop_id)


@pytest.fixture
def token_endpoint():  # type: ignore[no-untyped-def]
    """Shopify's token endpoint, answering a refresh; nothing else is reachable."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TOKEN_URL, json=REFRESHED)
        yield mock


@pytest.mark.parametrize("expires_in", [timedelta(hours=1), timedelta(minutes=6), None],
                         ids=["1h", "6min", "never"])
def test_fresh_token_is_used_without_calling_shopify(db, rt, token_endpoint, expires_in):
    shop = make_shop(db, rt.cipher, expires_in=expires_in)

    assert token_for(rt, shop.id) == "shpat_test_access"
    assert token_for(rt, shop.id) == "shpat_test_access"
    assert len(token_endpoint.calls) == 0


@pytest.mark.parametrize("expires_in", [timedelta(minutes=4), timedelta(seconds=1), -timedelta(hours=2)],
                         ids=["4min", "1s", "expired-2h-ago"])
def test_expiring_token_is_refreshed_once_and_the_rotated_refresh_token_stored(db, rt, token_endpoint,
                                                                                 expires_in):
    shop = make_shop(db, rt.cipher, expires_in=expires_in)

    assert token_for(rt, shop.id) == NEW_ACCESS
    assert token_for(rt, shop.id) == NEW_ACCESS  # the second call uses what the first stored

    assert len(token_endpoint.calls) == 1
    sent = parse_qs(token_endpoint.calls[0].request.body)
    assert sent == {"client_id": [API_KEY], "client_secret": [API_SECRET], "grant_type": ["refresh_token"],
                    "refresh_token": ["shprt_test_refresh"]}
    stored = reload(db, shop.id)
    for column, plaintext in ((stored.access_token, NEW_ACCESS), (stored.refresh_token, NEW_REFRESH)):
        assert isinstance(column, bytes) and plaintext.encode() not in column
        assert rt.cipher.decrypt(column) == plaintext
    assert abs(stored.access_token_expires_at - (utcnow() + timedelta(hours=1))) < timedelta(seconds=30)
    assert abs(stored.refresh_token_expires_at - (utcnow() + timedelta(days=90))) < timedelta(seconds=30)


def test_concurrent_callers_share_one_refresh(db, rt):
    shop = make_shop(db, rt.cipher, expires_in=-timedelta(minutes=1))
    callers = 12
    calls: list[dict[str, list[str]]] = []
    calls_lock = threading.Lock()

    def slow_refresh(request):  # type: ignore[no-untyped-def]
        with calls_lock:
            calls.append(parse_qs(request.body))
        time.sleep(0.3)  # long enough that every caller arrives while the refresh is in flight
        return 200, {}, json.dumps(REFRESHED)

    barrier = threading.Barrier(callers)
    results: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            barrier.wait(timeout=10)
            token = token_for(rt, shop.id)
        except BaseException as exc:  # noqa: BLE001  reported by the assertion below
            errors.append(exc)
        else:
            results.append(token)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, TOKEN_URL, callback=slow_refresh)
        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert errors == []
    assert results == [NEW_ACCESS] * callers
    assert len(calls) == 1
    assert calls[0]["refresh_token"] == ["shprt_test_refresh"]
    stored = reload(db, shop.id)
    assert rt.cipher.decrypt(stored.refresh_token) == NEW_REFRESH
    assert rt.cipher.decrypt(stored.access_token) == NEW_ACCESS


def test_failed_refresh_keeps_the_old_tokens_and_releases_the_lock(db, rt, token_endpoint):
    shop = make_shop(db, rt.cipher, expires_in=-timedelta(minutes=1))
    token_endpoint.replace(responses.POST, TOKEN_URL, status=503, body="unavailable")

    with pytest.raises(oauth.TokenEndpointUnavailable):
        token_for(rt, shop.id)
    stored = reload(db, shop.id)
    assert rt.cipher.decrypt(stored.refresh_token) == "shprt_test_refresh"

    # The next attempt (rq's retry) is not blocked by a lock left behind, and refreshes.
    token_endpoint.replace(responses.POST, TOKEN_URL, json=REFRESHED)
    started = time.monotonic()
    assert token_for(rt, shop.id) == NEW_ACCESS
    assert time.monotonic() - started < 2


def test_refused_refresh_is_permanent_and_stores_nothing(db, rt, token_endpoint):
    shop = make_shop(db, rt.cipher, expires_in=-timedelta(minutes=1))
    token_endpoint.replace(responses.POST, TOKEN_URL, status=400,
                           json={"error": "invalid_grant", "error_description": "refresh token revoked"})

    with pytest.raises(oauth.TokenEndpointError) as caught:
        token_for(rt, shop.id)

    assert caught.value.transient is False
    assert rt.cipher.decrypt(reload(db, shop.id).access_token) == "shpat_test_access"


def test_uninstalled_shop_has_no_token(db, rt, token_endpoint):
    shop = make_shop(db, rt.cipher, installed=False)

    with pytest.raises(ShopNotInstalled):
        token_for(rt, shop.id)
    assert len(token_endpoint.calls) == 0


def test_unknown_shop_has_no_token(rt, token_endpoint):
    with pytest.raises(ShopNotInstalled):
        token_for(rt, 999_999)


def test_expired_token_without_a_refresh_token_is_not_usable(db, rt, token_endpoint):
    shop = make_shop(db, rt.cipher, expires_in=-timedelta(minutes=1), refresh_token=None)

    with pytest.raises(ShopNotInstalled):
        token_for(rt, shop.id)
    assert len(token_endpoint.calls) == 0


# --- encryption at rest and key rotation ---------------------------------------------------------

def test_cipher_never_stores_plaintext_and_salts_each_encryption():
    cipher = TokenCipher((Fernet.generate_key().decode(),))

    first, second = cipher.encrypt("shpat_secret"), cipher.encrypt("shpat_secret")

    assert first != second
    assert b"shpat_secret" not in first
    assert cipher.decrypt(first) == cipher.decrypt(second) == "shpat_secret"


def test_cipher_with_a_new_first_key_still_reads_old_ciphertext():
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_ciphertext = TokenCipher((old_key,)).encrypt("shpat_old")
    both = TokenCipher((new_key, old_key))

    assert both.decrypt(old_ciphertext) == "shpat_old"
    new_ciphertext = both.encrypt("shpat_new")
    assert TokenCipher((new_key,)).decrypt(new_ciphertext) == "shpat_new"  # the first key encrypts
    with pytest.raises(OnceCodeError):
        TokenCipher((new_key,)).decrypt(old_ciphertext)
    assert TokenCipher((new_key,)).decrypt(both.rotate(old_ciphertext)) == "shpat_old"


def test_cipher_refuses_garbage_and_no_keys():
    with pytest.raises(OnceCodeError, match="TOKEN_ENCRYPTION_KEY"):
        TokenCipher((Fernet.generate_key().decode(),)).decrypt(b"not a fernet token")
    with pytest.raises(ValueError):
        TokenCipher(())


def test_rotate_key_command_re_encrypts_with_the_new_key(db, rt, runner):
    installed = make_shop(db, rt.cipher)
    make_shop(db, rt.cipher, domain="gone.myshopify.com", installed=False)
    new_key = Fernet.generate_key().decode()
    # What an operator does: put the new key first, keep the old one, restart, run the command.
    rt.settings = rt.settings.with_overrides(token_encryption_keys=(new_key, TOKEN_KEY))
    rt.cipher = TokenCipher(rt.settings.token_encryption_keys)

    result = runner.invoke(args=["tokens", "rotate-key"])

    assert result.exit_code == 0, result.output
    assert "2 shops re-encrypted" in result.output
    stored = reload(db, installed.id)
    new_only = TokenCipher((new_key,))
    assert new_only.decrypt(stored.access_token) == "shpat_test_access"
    assert new_only.decrypt(stored.refresh_token) == "shprt_test_refresh"
    with pytest.raises(InvalidToken):
        Fernet(TOKEN_KEY).decrypt(stored.access_token)
