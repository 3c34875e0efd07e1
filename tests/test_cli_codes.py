"""The operator CLI for codes: `flask codes list|show|issue|revoke|retry`, with devstore as the store."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from app.models import IssuedCode
from tests.conftest import run_worker
from tests.e2e.harness import SHOP, Workers, World, installed_with_welcome


@pytest.fixture
def cli(world: World):  # type: ignore[no-untyped-def]
    installed_with_welcome(world)
    return world.app.test_cli_runner()


def signed_up(world: World) -> dict:
    customer = world.control("POST", "/customers", json={"email": "cli@example.com"})
    world.wait_delivered("customers/create")
    run_worker(world.rt.redis)
    return customer


def test_list_and_show(cli, world: World):
    customer = signed_up(world)
    listed = cli.invoke(args=["codes", "list", SHOP])
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["ID", "CODE", "STATUS", "PROGRAM", "CUSTOMER", "ISSUED", "EXPIRES", "ERROR"]
    code = row.split()[1]
    assert row.split()[2:5] == ["attached", "welcome", str(customer["id"])]

    shown = cli.invoke(args=["codes", "show", SHOP, code.lower()])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["url"].endswith(f"/discount/{code}")
    assert cli.invoke(args=["codes", "show", SHOP, "1"]).exit_code == 0  # by id too
    missing = cli.invoke(args=["codes", "show", SHOP, "NOPE"])
    assert missing.exit_code != 0 and "no code 'NOPE'" in missing.output
    assert "no codes like that" in cli.invoke(args=["codes", "list", SHOP, "--status", "failed"]).output


def test_issue_by_hand_waits_and_shows_progress(cli, world: World):
    customer = signed_up(world)
    with Workers(world):  # the CLI queues the job; a worker process runs it while the CLI waits
        issued = cli.invoke(args=["codes", "issue", SHOP, "welcome", str(customer["id"]), "--wait", "20"])
    assert issued.exit_code == 0, issued.output
    assert "reserved" in issued.output.splitlines()[0] and issued.output.rstrip().endswith("attached")
    assert len(world.control("GET", "/discounts")) == 2

    again = cli.invoke(args=["codes", "issue", SHOP, "welcome", str(customer["id"]), "--key", "k1"])
    same = cli.invoke(args=["codes", "issue", SHOP, "welcome", str(customer["id"]), "--key", "k1"])
    assert "reserved" in again.output and "exists already" in same.output


def test_issue_by_hand_waiting_for_a_code_that_fails_exits_non_zero(cli, world: World):
    with Workers(world):  # the store refuses a code locked to a customer it does not have
        issued = cli.invoke(args=["codes", "issue", SHOP, "welcome", "987654321", "--wait", "20"])
    assert issued.exit_code != 0, issued.output
    assert "  failed: " in issued.output and "was not issued" in issued.output
    assert f"flask codes retry {SHOP} 1" in issued.output


def test_issue_by_hand_waiting_in_vain_exits_non_zero(cli, world: World):
    customer = signed_up(world)
    issued = cli.invoke(args=["codes", "issue", SHOP, "welcome", str(customer["id"]), "--wait", "0.5"])
    assert issued.exit_code != 0 and "still reserved after 0.5 s: is a worker running?" in issued.output


def test_revoke_and_retry(cli, world: World):
    signed_up(world)
    revoked = cli.invoke(args=["codes", "revoke", SHOP, "1"])
    assert revoked.exit_code == 0 and "deactivation queued" in revoked.output
    run_worker(world.rt.redis)
    assert world.control("GET", "/discounts")[0]["deactivated_at"] is not None
    assert "already" in cli.invoke(args=["codes", "revoke", SHOP, "1"]).output

    refused = cli.invoke(args=["codes", "retry", SHOP, "1"])
    assert refused.exit_code != 0 and "only failed codes" in refused.output
    with world.rt.db.session_scope() as session:
        session.execute(update(IssuedCode).values(status="failed", last_error="boom", deactivated_at=None))
    assert "on its way again" in cli.invoke(args=["codes", "retry", SHOP, "1"]).output
    run_worker(world.rt.redis)
    with world.rt.db.session_scope() as session:
        assert session.get_one(IssuedCode, 1).status == "attached"
