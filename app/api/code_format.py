"""A code format's live sample in the JSON API (on the API blueprint: session token, scoped to its shop).
Routes only; the rules are ``app.codes.programs.format_sample``'s, the ones ``update_program`` applies.

| call | answer |
|---|---|
| ``GET /api/code-format/sample?prefix=&length=&alphabet=&pattern=`` | ``{example, entropy_bits, volume, problem}`` |

A part left out is the generator's default (no prefix, 10 characters, the default alphabet, no pattern);
``problem`` is null when a program could issue ``volume`` codes in the format, else what is wrong, in
the words ``PATCH /api/programs/{id}`` would use; ``example`` is null when the format is too malformed
to make one. The admin's Programs page asks it as the merchant types.
"""

from __future__ import annotations

from flask import jsonify, request

from app.api.routes import _shop, bp
from app.codes import programs
from app.codes.generator import CodeFormat
from app.params import whole_number

# Lengths past the rule still get the rule's message (code_length must be 6 to 32, not 40); this bound
# only keeps a number that is not a length out.
MAX_LENGTH_ASKED = 999


@bp.get("/code-format/sample")
def code_format_sample():  # type: ignore[no-untyped-def]
    """A sample code of the format the query describes, its entropy and its problem, if any."""
    _shop()
    args, default = request.args, CodeFormat()
    length = args.get("length")
    return jsonify(programs.format_sample(
        prefix=args.get("prefix", default.prefix),
        length=default.length if length is None else whole_number(length, "length", 0, MAX_LENGTH_ASKED),
        alphabet=args.get("alphabet", default.alphabet),
        pattern=args.get("pattern") or None))

