"""Unique-code formats and generation.

A code is an optional prefix plus random characters drawn with ``secrets`` from an alphabet without
look-alikes (no 0/O, no 1/I/L), laid out by length or by a pattern such as ``####-####``. Codes are
upper case: Shopify compares them case-insensitively, and so does our unique index.

A format must be hard to guess and roomy enough for the volume asked of it: at least
``MIN_ENTROPY_BITS`` of randomness, and a code space at least ``HEADROOM`` times the volume, so that
a fresh code collides with an issued one less than once in a million tries.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass

from app.errors import BadRequest

# A-Z and 2-9 without the look-alikes 0/O, 1/I/L: 31 characters, about 4.95 bits each.
DEFAULT_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
PLACEHOLDER = "#"
MIN_ENTROPY_BITS = 40
HEADROOM = 2**20
MAX_CODE_LENGTH = 32
LITERAL_RE = re.compile(r"[A-Z0-9_-]*")


class CodeFormatError(BadRequest):
    """A format that cannot serve: the message says why and what to change."""


def normalise(code: str) -> str:
    """The stored form of a code: trimmed and upper case."""
    return code.strip().upper()


@dataclass(frozen=True)
class CodeFormat:
    prefix: str = ""
    length: int = 10  # random characters, when there is no pattern
    alphabet: str = DEFAULT_ALPHABET
    pattern: str | None = None  # e.g. "####-####": each # a random character, the rest literal

    @property
    def random_characters(self) -> int:
        return self.pattern.count(PLACEHOLDER) if self.pattern else self.length

    @property
    def space(self) -> int:
        """How many different codes the format can make."""
        return len(self.alphabet) ** self.random_characters

    @property
    def entropy_bits(self) -> float:
        return self.random_characters * math.log2(len(self.alphabet)) if len(self.alphabet) > 1 else 0.0

    @property
    def code_length(self) -> int:
        body = len(self.pattern) if self.pattern else self.length
        return len(self.prefix) + body

    def check(self, volume: int = 1) -> None:
        """Refuse a malformed format, or one too small or too guessable for ``volume`` codes."""
        problems = self.shape_problems()
        if problems:
            raise CodeFormatError("; ".join(problems))
        if self.entropy_bits < MIN_ENTROPY_BITS:
            raise CodeFormatError(
                f"codes would be guessable: {self.random_characters} random characters from "
                f"{len(self.alphabet)} give {self.entropy_bits:.1f} bits, at least {MIN_ENTROPY_BITS} are "
                f"needed; use at least {self.characters_needed(1)} random characters")
        if self.space < volume * HEADROOM:
            raise CodeFormatError(
                f"the format allows {self.space:,} codes, too few for {volume:,}: new codes would start "
                f"to collide with issued ones; use at least {self.characters_needed(volume)} random characters")

    def characters_needed(self, volume: int) -> int:
        """The fewest random characters that pass ``check`` for ``volume`` codes with this alphabet."""
        base = len(self.alphabet)
        by_entropy = math.ceil(MIN_ENTROPY_BITS / math.log2(base))
        by_volume = math.ceil(math.log(volume * HEADROOM, base) - 1e-9)
        return max(by_entropy, by_volume)

    def generate(self) -> str:
        """A new random code in this format (call ``check`` once before generating many)."""
        if self.pattern:
            return self.prefix + "".join(
                secrets.choice(self.alphabet) if ch == PLACEHOLDER else ch for ch in self.pattern)
        return self.prefix + "".join(secrets.choice(self.alphabet) for _ in range(self.length))

    def shape_problems(self) -> list[str]:
        """What makes the format malformed (nothing generates from it then), or nothing."""
        problems = []
        if not LITERAL_RE.fullmatch(self.prefix) or len(self.prefix) > 16:
            problems.append("the prefix may hold up to 16 characters A-Z, 0-9, '-' and '_'")
        alphabet = self.alphabet
        if len(set(alphabet)) != len(alphabet) or len(alphabet) < 2 or not alphabet.isalnum() \
                or alphabet != alphabet.upper() or not alphabet.isascii():
            problems.append("the alphabet must be at least 2 distinct characters A-Z and 0-9")
        if self.pattern is not None:
            literal = self.pattern.replace(PLACEHOLDER, "")
            if PLACEHOLDER not in self.pattern or not LITERAL_RE.fullmatch(literal):
                problems.append(f"the pattern needs {PLACEHOLDER} for each random character; other characters "
                                "may be A-Z, 0-9, '-' and '_'")
        elif not 1 <= self.length <= MAX_CODE_LENGTH:
            problems.append(f"the length must be 1 to {MAX_CODE_LENGTH} random characters")
        if self.code_length > MAX_CODE_LENGTH + 16:
            problems.append(f"codes would be {self.code_length} characters long; keep them to "
                            f"{MAX_CODE_LENGTH + 16} so customers can type them")
        return problems
