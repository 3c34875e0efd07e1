import hashlib
import hmac

import pytest

from app.codes.fingerprints import email_fingerprint, normalise_email

KEY = "k" * 32


def expected(normalised: str, key: str = KEY) -> str:
    return hmac.new(key.encode(), normalised.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("email", "normalised"), [
    ("jane.doe@gmail.com", "janedoe@gmail.com"),
    ("j.a.n.e.doe+shop@gmail.com", "janedoe@gmail.com"),
    ("JaneDoe+a+b@Gmail.com", "janedoe@gmail.com"),
    ("jane.doe@googlemail.com", "janedoe@gmail.com"),
    ("JANE.DOE@GOOGLEMAIL.COM", "janedoe@gmail.com"),
    ("  jane@example.com \n", "jane@example.com"),
    ("Jane@Example.COM", "jane@example.com"),
    ("jane+shop@example.com", "jane+shop@example.com"),  # other providers: the +tag is another address
    ("jane.doe@example.com", "jane.doe@example.com"),  # and so are the dots
])
def test_normalisation(email: str, normalised: str) -> None:
    assert normalise_email(email) == normalised
    assert email_fingerprint(KEY, email) == expected(normalised)


@pytest.mark.parametrize("email", [None, "", "   ", "jane", "@example.com", "jane@", "ja ne@example.com",
                                   "+tag@gmail.com", "...@gmail.com", 42])
def test_no_usable_email_has_no_fingerprint(email: object) -> None:
    assert email_fingerprint(KEY, email) is None


def test_the_key_matters() -> None:
    assert email_fingerprint(KEY, "a@b.com") != email_fingerprint("x" * 32, "a@b.com")
    assert email_fingerprint(KEY, "a@b.com") != hashlib.sha256(b"a@b.com").hexdigest()
