"""The Programs page: the shop's programs (welcome, referral friend, referral reward, manual) with their
value, expiry and status, each switched on or off from the list; and a program's page with every field
``update_program`` takes, a live sample of its code format and, on the referral reward program, every
referral setting (``update_settings``), saved together, all or nothing.

Routes only. A form's text becomes the JSON values the API takes — only for the fields the merchant
changed, so that the domain's messages name what they touched — and ``update_program`` and
``update_settings`` judge it with the rules and the words of the API and the CLI; their problems come
back by field (``InvalidChange.problems``) and are shown next to it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import render_template, request
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from app.admin.routes import bp, done, installed_shop, notice, render_page
from app.codes import referral_settings
from app.codes.programs import (
    ALWAYS_LOCKED,
    CODE_FIELDS,
    CODE_FORMAT,
    FIELDS,
    Problem,
    format_sample,
    get_program,
    program_json,
    shop_programs,
    update_program,
)
from app.errors import BadRequest, InvalidChange, NotFound
from app.models import VALUE_TYPES, Program, Shop
from app.params import shown, storable_text
from app.web import db_session

KIND_LABELS = {"welcome": "Welcome", "referral_friend": "Referral friend", "referral_reward": "Referral reward",
               "manual": "Manual"}
# What turning a program off does, said where the merchant confirms it (app.codes.welcome, landing, rewards).
OFF_EFFECTS = {
    "welcome": "Customers who sign up while it is off get no welcome code.",
    "referral_friend": "Referral links hand out no friend codes while it is off.",
    "referral_reward": "Referral links hand out no friend codes while it is off, and a referral whose hold ends "
                       "while it is off is voided: its advocate gets no reward.",
}
for _kind, _label in KIND_LABELS.items():
    notice(f"program-saved-{_kind}", f"{_label} program saved.")
    notice(f"program-on-{_kind}", f"{_label} program turned on.")
    notice(f"program-off-{_kind}", f"{_label} program turned off.")

# A form field: its JSON type and whether an empty field means null ("none").
Spec = dict[str, tuple[str, bool]]
PROGRAM_SPEC: Spec = {name: (field.type, field.nullable) for name, field in FIELDS.items()}
SETTINGS_SPEC: Spec = {name: (setting.type, False) for name, setting in referral_settings.SETTINGS.items()}
REFERRAL_KINDS = (referral_settings.REWARD, referral_settings.FRIEND)
WHOLE_NUMBER_RE = re.compile(r"[+-]?[0-9]{1,20}")  # ASCII, short enough for int(); the domain bounds it


@bp.get("/programs", endpoint="programs")
def program_list():  # type: ignore[no-untyped-def]
    shop = installed_shop()
    return _list_page(shop)


@bp.post("/programs/<id:program_id>/active", endpoint="program_active")
def program_switch(program_id: int):  # type: ignore[no-untyped-def]
    """Turn a program on or off (``active=on|off``): the state asked for, so a second click changes nothing."""
    shop = installed_shop()
    wanted = request.form.get("active", "")
    if wanted not in ("on", "off"):
        raise BadRequest(f"active must be on or off, not {shown(wanted)}")
    session = db_session()
    program = _program(session, shop, program_id)
    if program is None:
        return _missing(program_id)
    try:
        update_program(session, shop.id, program.id, {"active": wanted == "on"})
    except InvalidChange as exc:  # a program stored before a rule tightened: say what to fix first
        session.rollback()
        return _list_page(shop, refused={program_id: [text for _, text in exc.problems]}), 400
    session.commit()
    return done("admin.programs", f"program-{wanted}-{program.kind}")


@bp.get("/programs/<id:program_id>", endpoint="program")
def program_page(program_id: int):  # type: ignore[no-untyped-def]
    shop = installed_shop()
    session = db_session()
    program = _program(session, shop, program_id)
    if program is None:
        return _missing(program_id)
    return _edit_page(shop, session, program, {}, [])


@bp.post("/programs/<id:program_id>", endpoint="program_save")
def program_save(program_id: int):  # type: ignore[no-untyped-def]
    """Save a program's form (and, on the referral reward program, the referral settings): every change
    judged by the domain, all or nothing; each problem shown next to its field."""
    shop = installed_shop()
    session = db_session()
    program = _program(session, shop, program_id)
    if program is None:
        return _missing(program_id)
    form = request.form
    typed, changes, problems = read_form(form, PROGRAM_SPEC, form_values(program))
    settings_changes: dict[str, Any] = {}
    if program.kind == referral_settings.REWARD and (current := _settings(session, shop)) is not None:
        more_typed, settings_changes, more = read_form(form, SETTINGS_SPEC, {n: _text(v) for n, v in current.items()})
        typed, problems = typed | more_typed, problems + more
    # The settings first: update_settings locks both referral programs in id order, as every door does.
    for change, apply in ((settings_changes, lambda c: referral_settings.update_settings(session, shop.id, c)),
                          (changes, lambda c: update_program(session, shop.id, program.id, c))):
        if change:
            try:
                apply(change)
            except InvalidChange as exc:
                problems += exc.problems
    if problems:
        session.rollback()
        return _edit_page(shop, session, program, typed, problems, sent=set(changes)), 400
    session.commit()
    return done("admin.program", f"program-saved-{program.kind}", program_id=program.id)


# --- the form ----------------------------------------------------------------------------------------

def _text(value: Any) -> str | bool:
    """A stored value as its form field shows it: a checkbox's bool, or an input's text."""
    if isinstance(value, bool):
        return value
    return "" if value is None else str(value)


def form_values(program: Program) -> dict[str, str | bool]:
    """The program's fields as the form shows them."""
    return {name: _text(getattr(program, name)) for name in FIELDS}


def read_form(form: MultiDict[str, str], spec: Spec, current: dict[str, str | bool]
              ) -> tuple[dict[str, str | bool], dict[str, Any], list[Problem]]:
    """What the form says of the fields in ``spec``: each as typed (to show it back), the changes as the
    JSON values the API takes (fields whose text differs from ``current``), and text no database holds.

    A field the form does not carry is left alone. A checkbox comes after a hidden field of the same
    name, so an unticked box still says "false". Only the JSON type is read here: a word that is not
    a number goes on as it is, for the domain to refuse in its own words.
    """
    typed: dict[str, str | bool] = {}
    changes: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, (kind, nullable) in spec.items():
        sent = form.getlist(name)
        if not sent:
            continue
        value: str | bool = "1" in sent if kind == "bool" else sent[-1]
        typed[name] = value
        if value == current.get(name):
            continue
        try:
            storable_text(value, name)
        except BadRequest as exc:
            problems.append((name, str(exc)))
            continue
        changes[name] = _json_value(kind, nullable, value)
    return typed, changes, problems


def _json_value(kind: str, nullable: bool, value: str | bool) -> Any:
    if isinstance(value, bool):
        return value
    stripped = value.strip()
    if nullable and not stripped:
        return None
    if kind == "int" and WHOLE_NUMBER_RE.fullmatch(stripped):
        return int(stripped)
    return value


# --- the pages ---------------------------------------------------------------------------------------

def _program(session: Session, shop: Shop, program_id: int) -> Program | None:
    try:
        return get_program(session, shop.id, program_id)
    except NotFound:
        return None


def _settings(session: Session, shop: Shop) -> dict[str, bool | int] | None:
    """The referral settings, or None for a store without both referral programs (installed before them)."""
    try:
        return referral_settings.settings_json(session, shop.id)
    except NotFound:
        return None


def _missing(program_id: int):  # type: ignore[no-untyped-def]
    return render_template("admin/problem.html", title="Program not found",
                           message=f"This store has no program {program_id}. Open Programs to see the store's "
                                   "programs."), 404


def _list_page(shop: Shop, refused: dict[int, list[str]] | None = None) -> str:
    rows = [program_json(p) for p in shop_programs(db_session(), shop.id)]
    return render_page("admin/programs.html", shop, programs=rows, labels=KIND_LABELS, off_effects=OFF_EFFECTS,
                       refused=refused or {})


def _edit_page(shop: Shop, session: Session, program: Program, typed: dict[str, str | bool],
               problems: list[Problem], sent: set[str] | None = None) -> str:
    """The program's page: the form as the merchant typed it (``typed``) over the stored values, and each
    problem by its field (``None``: the form as a whole)."""
    values: dict[str, str | bool] = form_values(program)
    settings = _settings(session, shop) if program.kind in REFERRAL_KINDS else None
    reward = program.kind == referral_settings.REWARD and settings is not None
    values |= {name: _text(v) for name, v in (settings or {}).items()} if reward else {}
    values |= typed
    # The friend program's page sends the merchant to the settings, on the reward program's page.
    reward_id = next((p.id for p in shop_programs(session, shop.id) if p.kind == referral_settings.REWARD), None)
    errors: dict[str | None, list[str]] = {}
    for name, text in problems:
        errors.setdefault(name, []).append(text)
    # A problem with the format as a whole is shown once, by the sample; the fields it names are marked.
    format_fields = [name for name in CODE_FIELDS if name in (sent or ())] or list(CODE_FIELDS)
    invalid = set(errors) | (set(format_fields) if CODE_FORMAT in errors else set())
    return render_page("admin/program.html", shop, program=program_json(program), values=values, errors=errors,
                       invalid=invalid, sample=_sample(values), labels=KIND_LABELS, value_types=VALUE_TYPES,
                       always_locked=ALWAYS_LOCKED.get(program.kind), setting_meta=referral_settings.SETTINGS,
                       reward=reward, reward_id=reward_id if settings is not None else None,
                       off_effect=OFF_EFFECTS.get(program.kind))


def _sample(values: dict[str, str | bool]) -> dict[str, Any] | None:
    """The live sample of the format the form shows (None while its length is not a number)."""
    length = str(values["code_length"]).strip()
    if not re.fullmatch(r"[0-9]{1,3}", length):
        return None
    return format_sample(str(values["code_prefix"]), int(length), str(values["code_alphabet"]),
                         str(values["code_pattern"]) or None)
