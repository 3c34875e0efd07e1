"""Programs as the merchant sees and changes them: one JSON shape out, one validated way in.

Plain functions over a SQLAlchemy session; no Flask. The JSON API and the CLI both call
``update_program``, so a change is judged by the same rules and refused with the same messages
whichever door it comes through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.codes.generator import CodeFormat, CodeFormatError, normalise
from app.errors import InvalidChange, NotFound
from app.models import VALUE_TYPES, Program
from app.shopify.storefront import REDIRECT_PATH_RE

# Every program must be able to issue this many codes without its format running short.
PROGRAM_VOLUME = 1_000_000
MAX_EXPIRY_DAYS = 3650
# The columns are Numeric(12, 2): ten digits before the point, two after.
MONEY_LIMIT = Decimal(10) ** 10
CENT = Decimal("0.01")
# The database allows 6 to 32 (ck_programs_code_length); the generator asks for more when there is
# no pattern, and says why.
CODE_LENGTH_RANGE = (6, 32)
CODE_FIELDS = ("code_prefix", "code_length", "code_alphabet", "code_pattern")
# A problem with the format as a whole is about this field: the group program_json shows them in.
CODE_FORMAT = "code_format"
READ_ONLY = ("id", "kind")
# Programs whose codes are always locked to their customer, and why.
ALWAYS_LOCKED = {"referral_reward": "a reward is the advocate's alone"}
# A problem found with a change: the field it is about (None: the change as a whole) and its text,
# which begins with the field's name.
Problem = tuple[str | None, str]


@dataclass(frozen=True)
class Field:
    """What a changeable field takes: the JSON type, and whether ``null`` clears it."""

    type: Literal["bool", "int", "decimal", "text"]
    nullable: bool = False


FIELDS: dict[str, Field] = {
    "name": Field("text"),
    "active": Field("bool"),
    "value_type": Field("text"),
    "value": Field("decimal"),  # a number or a numeric string: "12.50" as program_json gives it
    "minimum_subtotal": Field("decimal", nullable=True),
    "expires_after_days": Field("int", nullable=True),
    "lock_to_customer": Field("bool"),
    "combines_with_product": Field("bool"),
    "combines_with_order": Field("bool"),
    "combines_with_shipping": Field("bool"),
    "code_prefix": Field("text"),
    "code_length": Field("int"),
    "code_alphabet": Field("text"),
    "code_pattern": Field("text", nullable=True),
    "redirect_path": Field("text", nullable=True),
}


def code_format(program: Program) -> CodeFormat:
    """The format the program's next codes are generated in."""
    return CodeFormat(prefix=program.code_prefix, length=program.code_length, alphabet=program.code_alphabet,
                      pattern=program.code_pattern)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


def program_json(program: Program) -> dict[str, Any]:
    """The program as the API answers it; money as strings so no float ever rounds it."""
    fmt = code_format(program)
    return {
        "id": program.id,
        "kind": program.kind,
        "name": program.name,
        "active": program.active,
        "value_type": program.value_type,
        "value": _money(program.value),
        "minimum_subtotal": _money(program.minimum_subtotal),
        "expires_after_days": program.expires_after_days,
        "lock_to_customer": program.lock_to_customer,
        "combines_with": {
            "product_discounts": program.combines_with_product,
            "order_discounts": program.combines_with_order,
            "shipping_discounts": program.combines_with_shipping,
        },
        "code_format": {
            "prefix": program.code_prefix,
            "length": program.code_length,
            "alphabet": program.code_alphabet,
            "pattern": program.code_pattern,
            "entropy_bits": round(fmt.entropy_bits, 1),
            "example": fmt.generate(),
        },
        "redirect_path": program.redirect_path,
    }


def shop_programs(session: Session, shop_id: int) -> list[Program]:
    """The shop's programs, oldest first."""
    return list(session.scalars(select(Program).where(Program.shop_id == shop_id).order_by(Program.id)))


def get_program(session: Session, shop_id: int, program_id: int, for_update: bool = False) -> Program:
    """One of the shop's programs; ``NotFound`` for another shop's, exactly as for one that never was."""
    query = select(Program).where(Program.shop_id == shop_id, Program.id == program_id)
    program = session.scalar(query.with_for_update() if for_update else query)
    if program is None:
        raise NotFound(f"no program {program_id} for this store")
    return program


def update_program(session: Session, shop_id: int, program_id: int, changes: Mapping[str, Any]) -> Program:
    """Apply ``changes`` (field name → JSON value) to one of the shop's programs, all or nothing.

    Every field is checked against the program as it would be after the change, and every problem is
    reported at once in an ``InvalidChange`` (a ``BadRequest``) naming the field and the rule, its
    ``problems`` by field (a problem with the code format as a whole is ``code_format``'s); nothing is
    changed then. The
    code format must pass ``CodeFormat.check(volume=PROGRAM_VOLUME)``, and its parts are stored upper
    case. Choosing ``free_shipping`` sets the value to 0.

    A change applies only to codes issued afterwards: codes already issued keep the value, expiry and
    format they were created with, here and on the store.
    """
    # Locked so that two concurrent edits (say, value_type and value) are judged one after the other.
    program = get_program(session, shop_id, program_id, for_update=True)
    problems = _unknown_fields(changes)
    parsed: dict[str, Any] = {}
    for name, raw in changes.items():
        if name in FIELDS:
            value, problem = _parse(name, FIELDS[name], raw)
            if problem:
                problems.append((name, problem))
            else:
                parsed[name] = value
    # The rules judge the fields that parsed, so a merchant sees every problem in one answer.
    new = {name: getattr(program, name) for name in FIELDS} | parsed
    problems += _check(new, given=set(parsed))
    if program.kind in ALWAYS_LOCKED and not new["lock_to_customer"]:
        problems.append(("lock_to_customer", f"lock_to_customer must stay true for the {program.kind} program: "
                                             f"{ALWAYS_LOCKED[program.kind]}"))
    if problems:
        raise InvalidChange(problems)
    for name, value in new.items():
        if getattr(program, name) != value:
            setattr(program, name, value)
    session.flush()
    return program


def _unknown_fields(changes: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = [(name, f"{name} cannot be changed") for name in changes if name in READ_ONLY]
    unknown = [name for name in changes if name not in FIELDS and name not in READ_ONLY]
    if unknown:
        problems.append((None, f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                        f"(the fields that can be changed are {', '.join(FIELDS)})"))
    return problems


def _parse(name: str, field: Field, raw: Any) -> tuple[Any, str | None]:
    """The value in its Python type, or a problem saying what the field takes."""
    if raw is None:
        return (None, None) if field.nullable else (None, f"{name} cannot be empty")
    if field.type == "bool":
        if isinstance(raw, bool):
            return raw, None
        return None, f"{name} must be true or false, not {raw!r}"
    if field.type == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw, None
        return None, f"{name} must be a whole number{' or null' if field.nullable else ''}, not {raw!r}"
    if field.type == "decimal":
        return _parse_decimal(name, raw)
    if isinstance(raw, str):
        return raw, None
    return None, f"{name} must be a string{' or null' if field.nullable else ''}, not {raw!r}"


def _parse_decimal(name: str, raw: Any) -> tuple[Decimal | None, str | None]:
    problem = f"{name} must be a number such as 10 or 12.50, not {raw!r}"
    # bool is an int to Python, and a float is converted through its shortest repr (0.1 → "0.1").
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None, problem
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None, problem
    return (value, None) if value.is_finite() else (None, problem)


def _check(new: dict[str, Any], given: set[str]) -> list[Problem]:
    """Problems with the program as it would be; normalises ``new`` in place on the way."""
    problems: list[Problem] = []
    new["name"] = new["name"].strip()
    if not 1 <= len(new["name"]) <= 255:
        problems.append(("name", "name must be 1 to 255 characters"))
    problems += _check_value(new, given)
    if new["minimum_subtotal"] is not None:
        found = _check_money("minimum_subtotal", new["minimum_subtotal"], "none (no minimum) or more than 0")
        problems += found
        if not found:
            new["minimum_subtotal"] = new["minimum_subtotal"].quantize(CENT)
    days = new["expires_after_days"]
    if days is not None and not 1 <= days <= MAX_EXPIRY_DAYS:
        problems.append(("expires_after_days", f"expires_after_days must be none (codes never expire) or 1 to "
                                               f"{MAX_EXPIRY_DAYS} days, not {days}"))
    problems += _check_code_format(new, given)
    problems += _check_redirect_path(new)
    return problems


def _check_redirect_path(new: dict[str, Any]) -> list[Problem]:
    path = (new["redirect_path"] or "").strip() or None
    new["redirect_path"] = path
    if path is not None and (len(path) > 255 or not REDIRECT_PATH_RE.fullmatch(path)):
        return [("redirect_path", f"redirect_path must be a path on the store such as /collections/sale (or none "
                                  f"for the home page), not {path!r}")]
    return []


def _check_value(new: dict[str, Any], given: set[str]) -> list[Problem]:
    value_type, value = new["value_type"], new["value"]
    if value_type not in VALUE_TYPES:
        return [("value_type", f"value_type must be one of {', '.join(VALUE_TYPES)}, not {value_type!r}")]
    if value_type == "free_shipping":
        if "value" in given and value != 0:
            return [("value", f"value must be 0 (or left out) for free_shipping, not {value}")]
        new["value"] = Decimal("0.00")
        return []
    if value_type == "percentage" and not 0 < value <= 100:
        return [("value", f"value must be more than 0 and at most 100 for a percentage, not {value}")]
    problems = _check_money("value", value, f"more than 0 for {value_type}")
    if not problems:
        new["value"] = value.quantize(CENT)
    return problems


def _check_money(name: str, value: Decimal, rule: str) -> list[Problem]:
    """``rule`` is what the field must be, short of the column's size and scale, which are added here."""
    if not 0 < value < MONEY_LIMIT:
        return [(name, f"{name} must be {rule} and less than {MONEY_LIMIT:,.0f}, not {value}")]
    if value != value.quantize(CENT):
        return [(name, f"{name} may have at most 2 decimal places, not {value}")]
    return []


def _check_code_format(new: dict[str, Any], given: set[str]) -> list[Problem]:
    new["code_prefix"] = normalise(new["code_prefix"])
    new["code_alphabet"] = normalise(new["code_alphabet"])
    new["code_pattern"] = normalise(new["code_pattern"] or "") or None  # an empty pattern means "no pattern"
    fmt = CodeFormat(prefix=new["code_prefix"], length=new["code_length"], alphabet=new["code_alphabet"],
                     pattern=new["code_pattern"])
    if (problem := _length_problem(fmt.length)) is not None:
        return [("code_length", problem)]
    if (reason := _format_problem(fmt)) is not None:
        # Name the fields the merchant touched: the generator's reason speaks of the format as a whole.
        named = [name for name in CODE_FIELDS if name in given] or list(CODE_FIELDS)
        return [(CODE_FORMAT, f"{', '.join(named)}: {reason}")]
    return []


def _length_problem(length: int) -> str | None:
    low, high = CODE_LENGTH_RANGE
    if not low <= length <= high:
        return f"code_length must be {low} to {high} random characters, not {length}"
    return None


def _format_problem(fmt: CodeFormat) -> str | None:
    """Why ``fmt`` cannot serve a program (the generator's reason), or None."""
    try:
        fmt.check(volume=PROGRAM_VOLUME)
    except CodeFormatError as exc:
        return f"{exc} (a program must be able to issue {PROGRAM_VOLUME:,} codes)"
    return None


def format_sample(prefix: str, length: int, alphabet: str, pattern: str | None) -> dict[str, Any]:
    """What a code format would give, as the merchant types it: a sample code, its entropy, and the
    problem ``update_program`` would find with it (None when the format can issue ``PROGRAM_VOLUME``
    codes). The parts are normalised as ``update_program`` stores them; a format too malformed to
    generate from has no sample."""
    fmt = CodeFormat(prefix=normalise(prefix), length=length, alphabet=normalise(alphabet),
                     pattern=normalise(pattern or "") or None)
    problem = _length_problem(fmt.length) or _format_problem(fmt)
    # A well-formed format gives a sample even when too small to serve: the merchant sees its look.
    example = None if fmt.shape_problems() else fmt.generate()
    return {"example": example, "entropy_bits": round(fmt.entropy_bits, 1), "volume": PROGRAM_VOLUME,
            "problem": problem}
