"""Catch-up from the admin's side: its status, "reconcile now", the interval; and a redeemed code as shown."""

from __future__ import annotations

import pytest
from rq import Queue

from app.codes.reconciliation import PaidOrderFacts, reconcile
from app.queues import catch_up_job_id, job_status
from tests.e2e.harness import wait_until
from tests.helpers import issued_code, make_shop_with_programs, order_payload, session_token, take_and_die


@pytest.fixture
def shop(db, rt):  # type: ignore[no-untyped-def]
    return make_shop_with_programs(db, rt.cipher)


def auth(shop) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {session_token(shop.domain)}"}


def test_status_before_any_run(client, shop):
    body = client.get("/api/reconcile", headers=auth(shop)).get_json()
    assert body["interval_minutes"] == 15 and body["last_completed_at"] is None and body["job"] is None


def test_reconcile_now_queues_one_run(client, redis, shop):
    first = client.post("/api/reconcile", headers=auth(shop))
    assert first.status_code == 202 and first.get_json()["queued"] is True
    assert first.headers["Location"] == "/api/reconcile"
    assert first.get_json()["read_up_to"] == shop.installed_at.isoformat()
    again = client.post("/api/reconcile", headers=auth(shop))
    assert again.status_code == 200 and again.get_json()["queued"] is False
    assert job_status(redis, catch_up_job_id(shop.id)) is not None
    assert client.get("/api/reconcile", headers=auth(shop)).get_json()["job"] == "queued"


def test_a_run_whose_worker_was_lost_shows_abandoned_and_reconcile_now_takes_it_back(client, redis, shop):
    assert client.post("/api/reconcile", headers=auth(shop)).status_code == 202
    worker, job = take_and_die(redis, lease=1)  # the worker running it is killed
    assert job.id == catch_up_job_id(shop.id)
    assert client.get("/api/reconcile", headers=auth(shop)).get_json()["job"] == "started"  # its lease still runs
    wait_until(lambda: client.get("/api/reconcile", headers=auth(shop)).get_json()["job"] == "abandoned",
               timeout=5, what="the lease to lapse")

    taken_back = client.post("/api/reconcile", headers=auth(shop))
    assert taken_back.status_code == 202 and taken_back.get_json()["queued"] is True
    assert taken_back.get_json()["job"] == "recovering"
    assert Queue("default", connection=redis).job_ids == [job.id]  # the same job, at the front, once
    assert client.post("/api/reconcile", headers=auth(shop)).status_code == 200


def test_the_interval_can_be_changed(client, shop):
    answer = client.patch("/api/reconcile", json={"interval_minutes": 60}, headers=auth(shop))
    assert answer.status_code == 200 and answer.get_json()["interval_minutes"] == 60


@pytest.mark.parametrize(("body", "message"), [
    ({"interval_minutes": 0}, "from 1 to 1440"),
    ({"interval_minutes": "often"}, "from 1 to 1440"),
    ({"every": 5}, "interval_minutes"),
    ([], "interval_minutes"),
])
def test_a_bad_interval_is_a_400_naming_the_problem(client, shop, body, message):
    answer = client.patch("/api/reconcile", json=body, headers=auth(shop))
    assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_reconcile_needs_a_session_token(client, shop):
    assert client.post("/api/reconcile").status_code == 401


def test_reconcile_now_answers_503_when_the_queue_is_down(app_factory, db, rt):
    shop = make_shop_with_programs(db, rt.cipher)
    down = app_factory(redis_url="redis://127.0.0.1:1/0").test_client()
    answer = down.post("/api/reconcile", headers=auth(shop))
    assert answer.status_code == 503 and "queue is unavailable" in answer.get_json()["error"]


def test_a_redeemed_code_shows_its_order_and_any_anomaly(client, db, shop):
    code = issued_code(db, shop, "WELCOME-SHOWN1")
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(order_payload(
        71001, [("WELCOME-SHOWN1", "4.50")], total="40.50", subtotal="36.00")), "webhook")
    reconcile(db, shop.id, PaidOrderFacts.from_webhook(order_payload(71002, [("WELCOME-SHOWN1", "4.50")])), "webhook")
    db.commit()
    body = client.get(f"/api/codes/{code.id}", headers=auth(shop)).get_json()
    assert body["status"] == "redeemed" and body["open"] is False
    assert body["redemption"] == {"order_id": 71001, "order_name": "#71001", "paid_at": "2026-11-20T15:00:00+00:00",
                                  "order_total": "40.50", "order_subtotal": "36.00", "discount_amount": "4.50",
                                  "currency": "USD"}
    assert [a["order_id"] for a in body["anomalies"]] == [71002]


# --- the CLI ------------------------------------------------------------------------------------

def test_the_cli_queues_shows_and_sets_catch_up(runner, redis, shop):
    queued = runner.invoke(args=["reconcile", "now", shop.domain])
    assert queued.exit_code == 0 and "catch-up queued" in queued.output
    assert "already queued or running" in runner.invoke(args=["reconcile", "now", shop.domain]).output
    status = runner.invoke(args=["reconcile", "status", shop.domain])
    assert status.exit_code == 0 and "interval_minutes" in status.output and "queued" in status.output
    interval = runner.invoke(args=["reconcile", "interval", shop.domain, "5"])
    assert interval.exit_code == 0 and "every 5 min" in interval.output
    bad = runner.invoke(args=["reconcile", "interval", shop.domain, "0"])
    assert bad.exit_code == 2 and "MINUTES must be a whole number from 1 to 1440, not '0'" in bad.output


def test_the_cli_refuses_an_unknown_shop(runner):
    result = runner.invoke(args=["reconcile", "now", "nobody.myshopify.com"])
    assert result.exit_code != 0 and "nobody.myshopify.com" in result.output


def test_the_cli_catching_up_here_explains_an_unreachable_store(runner, db, shop, monkeypatch):
    import responses

    from app.models import ReconcileCursor
    from app.shopify import client

    monkeypatch.setattr(client, "RETRY_DELAYS", (0, 0))
    with responses.RequestsMock():  # nothing registered: every request fails to connect
        result = runner.invoke(args=["reconcile", "now", shop.domain, "--here"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "orders could not be read" in result.output and "run it again" in result.output
    db.expire_all()
    assert "AdminUnavailable" in db.get(ReconcileCursor, shop.id).last_error


@pytest.mark.parametrize(("seconds", "shown"), [(None, "-"), (42, "42 s"), (600, "10 min"), (7200, "2.0 h"),
                                                 (3 * 86400, "3.0 days")])
def test_durations_read_naturally(seconds, shown):
    from app.cli.common import duration as _duration

    assert _duration(seconds) == shown
