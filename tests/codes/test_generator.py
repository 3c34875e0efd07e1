"""Code formats: property tests for the format rules, and the refusals a merchant would meet."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.codes.generator import (
    DEFAULT_ALPHABET,
    HEADROOM,
    MIN_ENTROPY_BITS,
    CodeFormat,
    CodeFormatError,
    normalise,
)

prefixes = st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ0123456789-_", max_size=16)
alphabets = st.sets(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), min_size=2).map(
    lambda chars: "".join(sorted(chars)))


def test_the_default_format_has_no_look_alikes_and_at_least_40_bits():
    fmt = CodeFormat()
    assert not set("0O1IL") & set(DEFAULT_ALPHABET) and len(DEFAULT_ALPHABET) == 31
    assert fmt.entropy_bits >= MIN_ENTROPY_BITS
    fmt.check(volume=1_000_000)


@given(prefix=prefixes, length=st.integers(min_value=9, max_value=32))
def test_generated_codes_follow_the_format(prefix, length):
    fmt = CodeFormat(prefix=prefix, length=length)
    code = fmt.generate()
    assert code.startswith(prefix) and len(code) == len(prefix) + length
    assert set(code[len(prefix):]) <= set(DEFAULT_ALPHABET)
    assert normalise(code) == code  # generated codes are already in stored form


@given(pattern=st.lists(st.sampled_from(["#", "#", "#", "-", "A", "7"]), min_size=1, max_size=30).map("".join))
def test_patterns_place_random_characters_at_each_placeholder(pattern):
    fmt = CodeFormat(pattern=pattern, prefix="P-")
    if "#" not in pattern:
        with pytest.raises(CodeFormatError, match="pattern needs #"):
            fmt.check()
        return
    code = fmt.generate()
    assert code.startswith("P-") and len(code) == 2 + len(pattern)
    for ch, slot in zip(code[2:], pattern, strict=True):
        assert ch in DEFAULT_ALPHABET if slot == "#" else ch == slot


@settings(max_examples=200)
@given(alphabet=alphabets, length=st.integers(min_value=1, max_value=32),
       volume=st.integers(min_value=1, max_value=10**9))
def test_check_accepts_exactly_the_formats_big_enough(alphabet, length, volume):
    fmt = CodeFormat(length=length, alphabet=alphabet)
    big_enough = fmt.entropy_bits >= MIN_ENTROPY_BITS and fmt.space >= volume * HEADROOM
    if big_enough:
        fmt.check(volume)
    else:
        with pytest.raises(CodeFormatError):
            fmt.check(volume)
    # The advice given in a refusal is right: that many characters pass, one fewer does not.
    needed = fmt.characters_needed(volume)
    if needed <= 32:
        CodeFormat(length=needed, alphabet=alphabet).check(volume)
    smaller = CodeFormat(length=needed - 1, alphabet=alphabet) if needed > 1 else None
    if smaller is not None:
        with pytest.raises(CodeFormatError):
            smaller.check(volume)


@given(code=st.text(alphabet="abcdefghjkABCDEF23 ", min_size=1, max_size=20))
def test_normalise_is_upper_case_and_idempotent(code):
    once = normalise(code)
    assert once == once.upper() == normalise(once) and once == once.strip()


@pytest.mark.parametrize(("fmt", "volume", "message"), [
    (CodeFormat(length=6), 1, r"guessable: 6 random characters from 31 give 29\.7 bits.*at least 9 random"),
    (CodeFormat(pattern="####-####"), 1, "at least 9 random characters"),
    (CodeFormat(length=9), 10**8, r"allows 26,439,622,160,671 codes, too few for 100,000,000.*at least 10 random"),
    (CodeFormat(prefix="welcome-"), 1, "prefix may hold up to 16 characters"),
    (CodeFormat(alphabet="AAB"), 1, "alphabet must be at least 2 distinct"),
    (CodeFormat(alphabet="abc"), 1, "alphabet must be at least 2 distinct"),
    (CodeFormat(length=40), 1, "length must be 1 to 32"),
    (CodeFormat(pattern="XXXX"), 1, "pattern needs #"),
])
def test_refusals_say_why_and_what_to_change(fmt, volume, message):
    with pytest.raises(CodeFormatError, match=message) as refused:
        fmt.check(volume)
    assert refused.value.status == 400


def test_codes_are_random_not_sequential():
    codes = {CodeFormat().generate() for _ in range(2000)}
    assert len(codes) == 2000
    # Every character of the alphabet turns up in every position (31 symbols, 2000 draws each).
    for position in range(10):
        assert {c[position] for c in codes} == set(DEFAULT_ALPHABET)
    assert math.log2(len(DEFAULT_ALPHABET)) * 10 > 49
    assert all(re.fullmatch(f"[{DEFAULT_ALPHABET}]{{10}}", c) for c in codes)
