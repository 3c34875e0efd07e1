"""The admin's Programs page: the list (value, expiry, status, on/off), a program's form with every field
``update_program`` takes and its domain errors next to their fields, the referral settings saved with the
referral reward program, the code format's live sample (``GET /api/code-format/sample``), and a shop's
pages never showing or changing another shop's programs."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from markupsafe import escape
from sqlalchemy import select

from app.codes import referral_settings, welcome
from app.codes.generator import DEFAULT_ALPHABET
from app.codes.programs import FIELDS, update_program
from app.config import DEFAULT_SCOPES
from app.errors import InvalidChange
from app.models import IssuedCode, Program, Shop
from tests.admin.test_embedded import HOST, OTHER, SHOP, open_page
from tests.helpers import make_shop, make_shop_with_programs, program_of, session_token

SETTINGS_DEFAULTS = {name: setting.default for name, setting in referral_settings.SETTINGS.items()}


def installed_shop(db, rt, domain: str) -> Shop:  # type: ignore[no-untyped-def]
    """An installed shop with its programs, granted every scope we ask for (no token exchange)."""
    shop = make_shop_with_programs(db, rt.cipher, domain=domain)
    shop.scopes = DEFAULT_SCOPES
    db.commit()
    return shop


@pytest.fixture
def installed(db, rt) -> Shop:
    return installed_shop(db, rt, SHOP)


@pytest.fixture
def other(db, rt) -> Shop:
    return installed_shop(db, rt, OTHER)


def form_of(program: Program) -> dict[str, str]:
    """What the program's form sends untouched: every field as it is shown (checkboxes as hidden "0"
    then "1" when ticked)."""
    sent: dict[str, Any] = {}
    for name, field in FIELDS.items():
        value = getattr(program, name)
        if field.type == "bool":
            sent[name] = ["0", "1"] if value else ["0"]
        else:
            sent[name] = "" if value is None else str(value)
    return sent


def save(client, program_id: int, data: dict[str, Any], shop: str = SHOP):  # type: ignore[no-untyped-def]
    return client.post(f"/admin/programs/{program_id}", query_string={"shop": shop, "host": HOST, "embedded": "1"},
                       data={**data, "id_token": session_token(shop)})


def switch(client, program_id: int, active: str, shop: str = SHOP):  # type: ignore[no-untyped-def]
    return client.post(f"/admin/programs/{program_id}/active", query_string={"shop": shop, "host": HOST},
                       data={"active": active, "id_token": session_token(shop)})


def follow(client, response) -> str:  # type: ignore[no-untyped-def]
    """The page a 303 after an action leads to, opened with a fresh token (as admin.js does)."""
    assert response.status_code == 303, response.text
    target = urlsplit(response.headers["Location"])
    query = {name: values[0] for name, values in parse_qs(target.query).items()}
    page = open_page(client, session_token(SHOP), target.path, **query)
    assert page.status_code == 200, page.text
    return page.text


def field_error(html: str, name: str) -> str:
    """The error shown next to field ``name`` (its input marked invalid and described by it)."""
    tag = re.search(rf'<(?:input|select)[^>]*\bname="{name}"[^>]*>', html[html.index("<form"):])
    assert tag and 'aria-invalid="true"' in tag.group(0), f"{name} not marked invalid"
    error_id = "f-code_format-err" if name.startswith("code_") and f'id="f-{name}-err"' not in html else f"f-{name}-err"
    assert error_id in tag.group(0), f"{name} not described by its error"
    found = re.search(rf'<p class="error" id="{error_id}"[^>]*>([^<]*)</p>', html)
    assert found, f"no error next to {name}"
    return found.group(1)


# --- the list ----------------------------------------------------------------------------------------

def test_the_list_shows_each_program_with_its_value_expiry_and_status(client, installed, db):
    welcome_program = program_of(db, installed)
    update_program(db, installed.id, welcome_program.id, {"active": True, "value": 15, "minimum_subtotal": "40"})
    reward = program_of(db, installed, "referral_reward")
    update_program(db, installed.id, reward.id, {"value_type": "fixed_amount", "value": "12.5",
                                                 "expires_after_days": None})
    db.commit()
    page = open_page(client, session_token(SHOP), "/admin/programs")
    assert page.status_code == 200
    rows = {re.search(r'href="/admin/programs/(\d+)\?', row).group(1): row
            for row in re.findall(r"<tr>.*?</tr>", page.text, re.S)[1:]}
    assert set(rows) == {str(p.id) for p in installed.programs}
    welcome_row, reward_row = rows[str(welcome_program.id)], rows[str(reward.id)]
    assert "15 % off" in welcome_row and "40.00" in welcome_row and "30 days" in welcome_row
    assert '<span class="badge success">On</span>' in welcome_row and 'value="off"' in welcome_row
    assert re.search(r"WELCOME-[A-Z2-9]{10}", welcome_row)
    assert "12.50 off" in reward_row and "Never" in reward_row and '<span class="badge">Off</span>' in reward_row
    assert 'value="on"' in reward_row
    # The admin's navigation leads here.
    assert re.search(r'<s-app-nav>.*<a href="/admin/programs\?shop=demo.myshopify.com[^"]*">Programs</a>',
                     page.text, re.S)


def test_a_store_whose_programs_are_not_created_yet_is_told_what_happens(client, db, rt):
    shop = make_shop(db, rt.cipher, domain=SHOP)
    shop.scopes = DEFAULT_SCOPES
    db.commit()
    page = open_page(client, session_token(SHOP), "/admin/programs")
    assert page.status_code == 200
    assert "creates a welcome program and the referral programs" in page.text and "Reload" in page.text


def test_turning_a_program_on_from_the_list_twice_is_one_change(client, installed, db):
    program = program_of(db, installed)
    first, second = switch(client, program.id, "on"), switch(client, program.id, "on")
    assert program_of(db, installed).active is True
    assert first.headers["Location"] == second.headers["Location"]
    assert "Welcome program turned on." in follow(client, second)
    assert "Welcome program turned off." in follow(client, switch(client, program.id, "off"))
    switch(client, program.id, "off")
    assert program_of(db, installed).active is False


def test_a_program_the_rules_now_refuse_is_not_switched_and_says_why(client, installed, db):
    """A program stored before a rule tightened (here: 8 random characters) cannot be turned on as it is."""
    program = program_of(db, installed)
    program.code_length = 8
    db.commit()
    page = switch(client, program.id, "on")
    assert page.status_code == 400
    assert "Not switched: code_prefix, code_length, code_alphabet, code_pattern: codes would be guessable" in page.text
    assert program_of(db, installed).active is False
    edit = open_page(client, session_token(SHOP), f"/admin/programs/{program.id}").text
    assert re.search(r'<p class="error" id="f-code_format-err" data-sample-problem>codes would be guessable', edit)


@pytest.mark.parametrize("active", ["", "yes", "true", "ON"])
def test_a_switch_says_on_or_off(client, installed, db, active):
    program = program_of(db, installed)
    refused = switch(client, program.id, active)
    assert refused.status_code == 400 and "active must be on or off" in refused.text
    assert program_of(db, installed).active is False


def test_turning_off_is_confirmed_in_place_saying_what_it_stops(client, installed, db):
    program = program_of(db, installed)
    switch(client, program.id, "on")
    page = open_page(client, session_token(SHOP), "/admin/programs").text
    confirm = page[page.index('<details class="confirm">'):page.index("</details>")]
    assert "Customers who sign up while it is off get no welcome code." in confirm
    assert "Yes, turn off Welcome code" in confirm


# --- a program's page ----------------------------------------------------------------------------------

def test_a_programs_page_has_every_field_the_domain_takes(client, installed, db):
    program = program_of(db, installed)
    page = open_page(client, session_token(SHOP), f"/admin/programs/{program.id}")
    assert page.status_code == 200
    html = page.text
    form = html[html.index("<form"):html.index("</form>")]
    assert "data-save-bar" in form[:form.index(">")]
    assert set(re.findall(r'<(?:input|select)[^>]*\bname="(\w+)"', form)) == set(FIELDS)
    for name in FIELDS:  # each with its label
        assert f'<label for="f-{name}">' in form, name
    assert '<button type="submit">Save</button>' in form
    assert "Changes apply to the next code issued" in form
    # The sample, rendered with the page, in the program's format.
    assert re.search(r"data-sample-code>WELCOME-[A-Z2-9]{10}<", html)
    assert "Room for 1,000,000 codes: 49.5 bits of randomness each." in html
    assert '<script src="/static/programs.js" defer></script>' in html


def test_a_change_of_value_applies_to_the_next_signups_code(client, installed, db):
    program = program_of(db, installed)
    before = welcome.customer_signed_up(db, installed, 1001)  # off: no code
    assert before.code is None
    db.commit()
    saved = save(client, program.id, {**form_of(program), "value": "15", "active": ["0", "1"]})
    assert "Welcome program saved." in follow(client, saved)
    assert parse_qs(urlsplit(saved.headers["Location"]).query)["notice"] == ["program-saved-welcome"]
    db.expire_all()  # as a new delivery's session would see it
    signup = welcome.customer_signed_up(db, installed, 1002)
    db.commit()
    assert signup.code is not None and signup.code.terms["value"] == "15.00"
    # A later change leaves that code's terms alone and reaches the next one.
    save(client, program_of(db, installed).id, {**form_of(program_of(db, installed)), "value": "20"})
    db.expire_all()
    assert db.get(IssuedCode, signup.code.id).terms["value"] == "15.00"
    db.commit()
    assert welcome.customer_signed_up(db, installed, 1003).code.terms["value"] == "20.00"


def test_saving_the_form_untouched_changes_nothing(client, installed, db):
    program = program_of(db, installed)
    before = form_of(program)
    stamp = program.updated_at
    follow(client, save(client, program.id, before))
    follow(client, save(client, program.id, before))
    assert form_of(program_of(db, installed)) == before and program_of(db, installed).updated_at == stamp


def test_the_same_save_sent_twice_is_one_change(client, installed, db):
    program = program_of(db, installed)
    sent = {**form_of(program), "value": "15", "code_prefix": "hello-"}
    follow(client, save(client, program.id, sent))
    once = program_of(db, installed)
    stamp = (once.updated_at, str(once.value), once.code_prefix)
    follow(client, save(client, program.id, sent))  # the form as it was: "15" and "hello-" differ in text only
    again = program_of(db, installed)
    assert (again.updated_at, str(again.value), again.code_prefix) == stamp == (stamp[0], "15.00", "HELLO-")


def test_every_field_of_the_form_reaches_the_program(client, installed, db):
    program = program_of(db, installed)
    follow(client, save(client, program.id, {
        "name": " Hello code ", "active": ["0", "1"], "value_type": "fixed_amount", "value": "12.5",
        "minimum_subtotal": "30", "expires_after_days": "", "lock_to_customer": ["0"],
        "combines_with_product": ["0", "1"], "combines_with_order": ["0", "1"], "combines_with_shipping": ["0"],
        "code_prefix": "hi-", "code_length": "12", "code_alphabet": "abcdefghjkmnpqrstuvwxyz", "code_pattern": "",
        "redirect_path": "/collections/sale"}))
    saved = program_of(db, installed)
    assert (saved.name, saved.active, saved.value_type, str(saved.value), str(saved.minimum_subtotal)) == (
        "Hello code", True, "fixed_amount", "12.50", "30.00")
    assert (saved.expires_after_days, saved.lock_to_customer, saved.combines_with_product,
            saved.combines_with_order, saved.combines_with_shipping) == (None, False, True, True, False)
    assert (saved.code_prefix, saved.code_length, saved.code_alphabet, saved.code_pattern, saved.redirect_path) == (
        "HI-", 12, "ABCDEFGHJKMNPQRSTUVWXYZ", None, "/collections/sale")
    # And back: an empty field clears, a pattern replaces the length.
    follow(client, save(client, saved.id, {**form_of(saved), "minimum_subtotal": " ", "redirect_path": "",
                                           "code_pattern": "####-####-##"}))
    saved = program_of(db, installed)
    assert (saved.minimum_subtotal, saved.redirect_path, saved.code_pattern) == (None, None, "####-####-##")


def test_free_shipping_with_the_value_left_as_it_was_is_saved(client, installed, db):
    """Only the fields the merchant changed are sent, so the old value does not stand in the way."""
    program = program_of(db, installed)
    follow(client, save(client, program.id, {**form_of(program), "value_type": "free_shipping"}))
    saved = program_of(db, installed)
    assert (saved.value_type, str(saved.value)) == ("free_shipping", "0.00")


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"value": "200"}, "value", "value must be more than 0 and at most 100 for a percentage, not 200"),
    ({"value": "ten"}, "value", "value must be a number such as 10 or 12.50, not 'ten'"),
    ({"name": "  "}, "name", "name must be 1 to 255 characters"),
    ({"minimum_subtotal": "0"}, "minimum_subtotal",
     "minimum_subtotal must be none (no minimum) or more than 0 and less than 10,000,000,000, not 0"),
    ({"expires_after_days": "0"}, "expires_after_days",
     "expires_after_days must be none (codes never expire) or 1 to 3650 days, not 0"),
    ({"expires_after_days": "soon"}, "expires_after_days",
     "expires_after_days must be a whole number or null, not 'soon'"),
    ({"code_length": "40"}, "code_length", "code_length must be 6 to 32 random characters, not 40"),
    ({"code_length": "8"}, "code_length", "code_length: codes would be guessable: 8 random characters from 31 give "
                                          "39.6 bits, at least 40 are needed; use at least 9 random characters "
                                          "(a program must be able to issue 1,000,000 codes)"),
    ({"code_alphabet": "AB!"}, "code_alphabet",
     "code_alphabet: the alphabet must be at least 2 distinct characters A-Z and 0-9 (a program must be able to "
     "issue 1,000,000 codes)"),
    ({"redirect_path": "https://evil.example.com"}, "redirect_path",
     "redirect_path must be a path on the store such as /collections/sale (or none for the home page), not "
     "'https://evil.example.com'"),
    ({"value_type": "bogo"}, "value_type",
     "value_type must be one of percentage, fixed_amount, free_shipping, not 'bogo'"),
    ({"name": "a\x00b"}, "name", "name must not contain NUL characters"),
], ids=lambda value: value if isinstance(value, str) and len(value) < 20 else None)
def test_bad_input_is_refused_400_with_the_domains_words_next_to_the_field(client, installed, db, changes, field,
                                                                             message):
    program = program_of(db, installed)
    before = form_of(program)
    page = save(client, program.id, {**before, **changes})
    assert page.status_code == 400
    assert field_error(page.text, field).startswith(escape(message))
    if "\x00" not in "".join(changes.values()):  # the domain says it in these very words through the API too
        with pytest.raises(InvalidChange) as refused:
            update_program(db, installed.id, program.id, {name: _as_json(name, v) for name, v in changes.items()})
        db.rollback()
        assert str(refused.value) == message
    assert form_of(program_of(db, installed)) == before
    # What the merchant typed is shown back, to correct.
    typed = str(next(iter(changes.values()))).replace("\x00", "\ufffd")
    assert f'value="{escape(typed)}"' in page.text or f'<option value="{escape(typed)}"' not in page.text


def _as_json(name: str, value: str) -> Any:
    if FIELDS[name].type == "int" and value.isdigit():
        return int(value)
    return value


def test_every_problem_is_shown_at_once_and_nothing_is_saved(client, installed, db):
    program = program_of(db, installed)
    before = form_of(program)
    page = save(client, program.id, {**before, "name": "", "value": "0", "expires_after_days": "0",
                                     "active": ["0", "1"]})
    assert page.status_code == 400
    assert "3 problems kept this program from being saved" in page.text
    for name in ("name", "value", "expires_after_days"):
        field_error(page.text, name)
    assert form_of(program_of(db, installed)) == before  # not even "active"


def test_another_shops_program_is_not_found_and_stays_as_it_is(client, installed, other, db):
    theirs = program_of(db, other)
    before = form_of(theirs)
    assert open_page(client, session_token(SHOP), f"/admin/programs/{theirs.id}").status_code == 404
    assert save(client, theirs.id, {**before, "value": "50", "active": ["0", "1"]}).status_code == 404
    assert switch(client, theirs.id, "on").status_code == 404
    assert form_of(program_of(db, other)) == before
    mine = open_page(client, session_token(SHOP), "/admin/programs").text
    assert f"/admin/programs/{theirs.id}?" not in mine
    assert open_page(client, session_token(SHOP), "/admin/programs/999999").status_code == 404


# --- the referral programs -------------------------------------------------------------------------------

def test_the_referral_reward_lock_is_shown_not_offered(client, installed, db):
    reward = program_of(db, installed, "referral_reward")
    html = open_page(client, session_token(SHOP), f"/admin/programs/{reward.id}").text
    assert 'name="lock_to_customer"' not in html
    assert "Only the customer it was issued to can use a code: always, for this program (a reward is the " \
           "advocate&#39;s alone)" in html
    # Sent anyway (a crafted form), the domain refuses it in its words, next to where the lock is shown.
    page = save(client, reward.id, {**form_of(reward), "lock_to_customer": ["0"]})
    assert page.status_code == 400
    assert re.search(r'<p class="error" id="f-lock_to_customer-err">lock_to_customer must stay true for the '
                     r"referral_reward program: a reward is the advocate&#39;s alone</p>", page.text)
    assert program_of(db, installed, "referral_reward").lock_to_customer is True


def test_the_reward_page_holds_every_referral_setting(client, installed, db):
    reward = program_of(db, installed, "referral_reward")
    html = open_page(client, session_token(SHOP), f"/admin/programs/{reward.id}").text
    section = html[html.index('id="referral-settings"'):html.index("</form>")]
    for name, setting in referral_settings.SETTINGS.items():
        assert f'name="{name}"' in section, name
        assert escape(setting.meaning) in section, name  # what it means, in the domain's words
    assert 'name="hold_days" value="14"' in section


def test_the_referral_settings_are_saved_with_the_reward_program(client, installed, db):
    reward = program_of(db, installed, "referral_reward")
    sent = {**form_of(reward), **{n: str(v) for n, v in SETTINGS_DEFAULTS.items() if not isinstance(v, bool)},
            "first_order_only": ["0", "1"], "block_same_email": ["0", "1"]}
    page = save(client, reward.id, {**sent, "value": "15", "hold_days": "7", "block_same_email": ["0"],
                                    "pool_size": "500", "pool_low_water": "50"})
    assert "Referral reward program saved." in follow(client, page)
    db.expire_all()
    assert referral_settings.settings_json(db, installed.id) == {
        **SETTINGS_DEFAULTS, "hold_days": 7, "block_same_email": False, "pool_size": 500, "pool_low_water": 50}
    assert str(program_of(db, installed, "referral_reward").value) == "15.00"


def test_a_bad_setting_keeps_the_whole_form_from_saving(client, installed, db):
    reward = program_of(db, installed, "referral_reward")
    before = form_of(reward)
    page = save(client, reward.id, {**before, "value": "15", "hold_days": "400", "pool_low_water": "2000",
                                    "friend_codes_per_link_per_day": "many", "first_order_only": ["0"]})
    assert page.status_code == 400
    assert field_error(page.text, "hold_days") == "hold_days must be a whole number from 0 (reward at once) to 365 " \
                                                  "days, not 400"
    assert field_error(page.text, "pool_low_water").startswith("pool_low_water must be 0 or more and less than the "
                                                               "pool size (1000), not 2000")
    assert field_error(page.text, "friend_codes_per_link_per_day").endswith("not &#39;many&#39;")
    assert 'name="hold_days" value="400"' in page.text  # shown back as typed
    db.expire_all()
    assert referral_settings.settings_json(db, installed.id) == SETTINGS_DEFAULTS
    assert form_of(program_of(db, installed, "referral_reward")) == before  # the valid value neither


def test_the_friend_page_sends_the_merchant_to_the_referral_settings(client, installed, db):
    friend = program_of(db, installed, "referral_friend")
    reward = program_of(db, installed, "referral_reward")
    html = open_page(client, session_token(SHOP), f"/admin/programs/{friend.id}").text
    assert re.search(rf'href="/admin/programs/{reward.id}\?shop=demo.myshopify.com[^"#]*#referral-settings"', html)
    assert 'name="hold_days"' not in html


# --- the live sample ------------------------------------------------------------------------------------

def sample(client, shop: str = SHOP, token: str | None = None, **query: str):  # type: ignore[no-untyped-def]
    return client.get("/api/code-format/sample", query_string=query,
                      headers={"Authorization": f"Bearer {token or session_token(shop)}"})


def test_the_sample_answers_a_code_its_entropy_and_no_problem(client, installed):
    answer = sample(client, prefix="hi-", length="12", alphabet=DEFAULT_ALPHABET, pattern="")
    assert answer.status_code == 200
    body = answer.get_json()
    assert re.fullmatch(r"HI-[A-Z2-9]{12}", body.pop("example"))
    assert body == {"entropy_bits": 59.5, "volume": 1_000_000, "problem": None}
    pattern = sample(client, prefix="", length="10", pattern="####-####-##").get_json()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{2}", pattern["example"])
    defaults = sample(client).get_json()  # each part left out is the generator's default
    assert re.fullmatch(r"[A-Z2-9]{10}", defaults["example"]) and defaults["problem"] is None


@pytest.mark.parametrize(("query", "example", "problem"), [
    ({"length": "8"}, r"[A-Z2-9]{8}", "codes would be guessable: 8 random characters from 31 give 39.6 bits, at "
                                      "least 40 are needed; use at least 9 random characters (a program must be "
                                      "able to issue 1,000,000 codes)"),
    ({"length": "10", "alphabet": "ABC"}, r"[ABC]{10}", "codes would be guessable"),
    ({"length": "40"}, None, "code_length must be 6 to 32 random characters, not 40"),
    ({"alphabet": "a!"}, None, "the alphabet must be at least 2 distinct characters A-Z and 0-9"),
    ({"pattern": "----"}, None, "the pattern needs # for each random character"),
    ({"prefix": "X" * 17}, None, "the prefix may hold up to 16 characters"),
])
def test_the_sample_says_why_a_format_cannot_serve(client, installed, query, example, problem):
    body = sample(client, **query).get_json()
    assert problem in body["problem"]
    assert body["example"] is None if example is None else re.fullmatch(example, body["example"])


@pytest.mark.parametrize("length", ["", "x", "-1", "1000", "²", "9" * 30])
def test_a_sample_length_that_is_not_a_number_is_a_400(client, installed, length):
    answer = sample(client, length=length)
    assert answer.status_code == 400 and answer.get_json()["error"].startswith("length must be a whole number")


def test_the_sample_needs_a_session_token_of_an_installed_store(client, installed):
    assert client.get("/api/code-format/sample").status_code == 401
    assert sample(client, token=session_token(SHOP, secret="not-the-app-secret-0123456789abcdef")).status_code == 401
    assert sample(client, shop=OTHER).status_code == 404  # never installed


def test_the_page_asks_the_sample_route_as_the_merchant_types(client, installed, db):
    """The page's script reads the URL of the sample from the page; the route it names answers."""
    program = program_of(db, installed)
    html = open_page(client, session_token(SHOP), f"/admin/programs/{program.id}").text
    url = re.search(r'data-code-sample="([^"]+)"', html).group(1)
    assert client.get(url, headers={"Authorization": f"Bearer {session_token(SHOP)}"}).status_code == 200
    script = client.get("/static/programs.js").text
    for name in ("code_prefix", "code_length", "code_alphabet", "code_pattern"):
        assert f'"{name}"' in script


def test_after_a_refused_format_the_page_samples_what_was_typed(client, installed, db):
    program = program_of(db, installed)
    page = save(client, program.id, {**form_of(program), "code_prefix": "new-", "code_length": "8"})
    assert page.status_code == 400
    assert re.search(r"data-sample-code>NEW-[A-Z2-9]{8}<", page.text)
    assert db.scalar(select(Program.code_prefix).where(Program.id == program.id)) == "WELCOME-"
