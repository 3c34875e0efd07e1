import json
import logging

from app.logs import JsonFormatter


def test_logs_are_json_with_context_and_tokens_masked():
    record = logging.LogRecord("app.test", logging.INFO, __file__, 1, "refreshed shpat_abc123 for %s", ("x",), None)
    record.shop = "demo.myshopify.com"
    record.event_id = "e-1"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["shop"] == "demo.myshopify.com" and entry["event_id"] == "e-1" and entry["level"] == "info"
    assert "shpat_abc123" not in line and "shp***" in entry["msg"]


def test_intake_logs_carry_ids_and_no_body_or_secret(client, db, rt, caplog):
    from tests.conftest import API_SECRET
    from tests.helpers import make_shop, post_webhook

    make_shop(db, rt.cipher)
    caplog.set_level(logging.INFO)
    post_webhook(client, "customers/create", "demo.myshopify.com", {"id": 1, "email": "private@example.com"},
                 event_id="evt-123")
    [record] = [r for r in caplog.records if r.getMessage() == "webhook received"]
    assert record.event_id == "evt-123" and record.shop == "demo.myshopify.com" and record.status == "queue"
    text = caplog.text + json.dumps([r.__dict__ for r in caplog.records], default=str)
    assert "private@example.com" not in text and API_SECRET not in text and "shpat_" not in text
