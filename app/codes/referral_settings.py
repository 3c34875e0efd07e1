"""Every referral setting in one place: one JSON object out, one validated way in.

The settings live on the shop's two referral programs: the rewards and their fraud controls on the
``referral_reward`` program (``app.codes.rewards`` reads them), the landing caps and the friend code
pool on the ``referral_friend`` program (``app.codes.landing``, ``app.codes.pools``). A merchant should
not have to know that: ``settings_json`` shows them as one flat object and ``update_settings`` takes
any part of that object back, all or nothing, every problem reported at once naming the setting and
its rule (the style of ``programs.update_program``). Switching the program on or off stays on the
programs (``PATCH /api/programs/{id}`` ``{"active": true}``).

The caps and pool settings are judged by their own modules' rules (``landing.cap_problem``,
``pools.pool_setting_problems``), so the older doors (``/api/referrals/caps``, ``/api/referrals/pool``
and their commands) and this one refuse the same values; the reward settings have their rules here.

Plain functions over a SQLAlchemy session; no Flask. The JSON API and the CLI both call them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.codes import landing, pools
from app.errors import InvalidChange, NotFound
from app.models import Program
from app.params import shown

REWARD, FRIEND = "referral_reward", "referral_friend"
MAX_HOLD_DAYS = 365
MAX_REWARDS_PER_MONTH = 1000


@dataclass(frozen=True)
class Setting:
    """A referral setting: the program kind whose column holds it, its JSON type, its default (the
    column's) and what it means, in the words the README, the API and the CLI use."""

    kind: Literal["referral_reward", "referral_friend"]
    type: Literal["bool", "int"]
    default: bool | int
    meaning: str


SETTINGS: dict[str, Setting] = {
    "hold_days": Setting(REWARD, "int", 14, "days a referred order is held before the advocate's reward; 0 = at once"),
    "void_refund_percent": Setting(
        REWARD, "int", 50, "a refund of more than this % of the order total within the hold voids the referral; "
                           "0 = any refund does"),
    "first_order_only": Setting(REWARD, "bool", True, "reward only a friend's first paid order"),
    "block_same_email": Setting(REWARD, "bool", True, "block an order whose buyer has the advocate's email"),
    "rewards_per_advocate_per_month": Setting(REWARD, "int", 10, "rewards one advocate can earn in a calendar "
                                                                 "month; 0 = no cap"),
    "friend_codes_per_link_per_day": Setting(FRIEND, "int", 20, "friend codes one link hands out in 24 hours; "
                                                                "0 = no cap"),
    "friend_codes_per_address_per_hour": Setting(FRIEND, "int", 5, "friend codes one client address gets in an "
                                                                   "hour; 0 = no cap"),
    "pool_size": Setting(FRIEND, "int", 1000, "friend codes a pool is topped up to"),
    "pool_low_water": Setting(FRIEND, "int", 200, "a pool with fewer codes left is topped up; below pool_size"),
    "pool_window_days": Setting(FRIEND, "int", 7, "days a pool discount hands codes out before the next one "
                                                  "takes over"),
}
# Each setting's rule, as the messages and the README state it (the pool's depend on each other).
RULES = {
    "hold_days": f"a whole number from 0 (reward at once) to {MAX_HOLD_DAYS} days",
    "void_refund_percent": "a whole number from 0 (any refund voids) to 100",
    "rewards_per_advocate_per_month": f"a whole number from 0 (no cap) to {MAX_REWARDS_PER_MONTH}",
}
CAPS = ("friend_codes_per_link_per_day", "friend_codes_per_address_per_hour")
POOL = ("pool_size", "pool_low_water", "pool_window_days")
RANGES = {"hold_days": (0, MAX_HOLD_DAYS), "void_refund_percent": (0, 100),
          "rewards_per_advocate_per_month": (0, MAX_REWARDS_PER_MONTH)}


def referral_programs(session: Session, shop_id: int, for_update: bool = False) -> dict[str, Program]:
    """The shop's referral_reward and referral_friend programs, by kind (locked in id order when
    ``for_update``, so that two concurrent changes are judged one after the other). ``NotFound`` naming
    what is missing when the shop lacks either: a store installed before referrals existed."""
    query = select(Program).where(Program.shop_id == shop_id, Program.kind.in_((REWARD, FRIEND))).order_by(Program.id)
    found = {p.kind: p for p in session.scalars(query.with_for_update() if for_update else query)}
    missing = [kind for kind in (REWARD, FRIEND) if kind not in found]
    if missing:
        raise NotFound(f"this store has no {' or '.join(missing)} program, so it has no referral settings "
                       "(reinstalling OnceCode creates the missing programs)")
    return found


def settings_json(session: Session, shop_id: int) -> dict[str, bool | int]:
    """Every referral setting, by name: what ``update_settings`` takes back."""
    programs = referral_programs(session, shop_id)
    return {name: getattr(programs[setting.kind], name) for name, setting in SETTINGS.items()}


def update_settings(session: Session, shop_id: int, changes: Mapping[str, Any]) -> dict[str, bool | int]:
    """Apply ``changes`` (setting name → JSON value), all or nothing; the settings as they are then.

    Every problem is reported at once in an ``InvalidChange`` (a ``BadRequest``) naming the setting and
    its rule, its ``problems`` by setting, and nothing is changed: an unknown name, a value of the wrong
    JSON type (``true`` is not 1, ``1`` is not true) or out of range, a pool whose low-water mark would
    not be below its size. A change applies from now
    on: referrals already held keep the hold they were given, pools started keep their window.
    """
    programs = referral_programs(session, shop_id, for_update=True)
    problems = setting_problems(programs, changes)
    if problems:
        raise InvalidChange(problems)
    for name, value in changes.items():
        program = programs[SETTINGS[name].kind]
        if getattr(program, name) != value:
            setattr(program, name, value)
    session.flush()
    return settings_json(session, shop_id)


def setting_problems(programs: dict[str, Program], changes: Mapping[str, Any]) -> list[tuple[str | None, str]]:
    """Every problem with ``changes`` to the shop's referral ``programs`` (by kind), in the order given:
    (the setting it is about, or None for unknown names; its text)."""
    unknown = [name for name in changes if name not in SETTINGS]
    problems: list[tuple[str | None, str]] = []
    if unknown:
        names = ", ".join(shown(n) for n in unknown)
        problems.append((None, f"unknown setting{'s' if len(unknown) > 1 else ''} {names} "
                               f"(the referral settings are {', '.join(SETTINGS)})"))
    for name, raw in changes.items():
        if name in RANGES:
            problems += [(name, text) for text in _int_problem(name, raw)]
        elif name in CAPS and (problem := landing.cap_problem(name, raw)) is not None:
            problems.append((name, problem))
        elif name in SETTINGS and SETTINGS[name].type == "bool" and not isinstance(raw, bool):
            problems.append((name, f"{name} must be true or false, not {shown(raw)}"))
    pool = {name: raw for name, raw in changes.items() if name in POOL}
    if pool:
        _, found = pools.pool_setting_problems(programs[FRIEND], pool, names={name: name for name in POOL})
        problems += found
    return problems


def _int_problem(name: str, raw: Any) -> list[str]:
    low, high = RANGES[name]
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        return [f"{name} must be {RULES[name]}, not {shown(raw)}"]
    return []
