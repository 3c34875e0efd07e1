import io
import json
import logging
import sys

import pytest

from app.logs import JsonFormatter, MaskSecrets, configure_logging, mask_secrets


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


@pytest.mark.parametrize("text", [
    "token=shpat_abc123",  # glued to other text
    "id_shpat_abc123 was refreshed",  # after a word character: no word boundary to rely on
    "/auth?x=shprt%5Fabc123",  # URL-encoded underscore
    "shpca_abc123 shpss_abc123 shppa_abc123 shpua_abc123",
])
def test_token_shapes_are_masked_anywhere_in_a_line(text):
    assert "abc123" not in mask_secrets(text) and "shp***" in mask_secrets(text)


def test_json_lines_mask_tokens_in_message_fields_and_exception_text():
    try:
        raise ValueError("refresh failed for shprt_inexception")
    except ValueError:
        record = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "call with %s", ("shpat_inargs",),
                                   sys.exc_info())
    record.reason = "Authorization: Bearer shpat_inreason"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "shp***" in entry["msg"] and "shp***" in entry["reason"] and "shp***" in entry["error"]
    for secret in ("shpat_inargs", "shpat_inreason", "shprt_inexception"):
        assert secret not in line


def test_mask_filter_covers_lines_formatted_by_another_formatter():
    """gunicorn formats its own lines (app/gunicorn_conf.py adds this filter to its loggers)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.gunicorn-like")
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.addFilter(MaskSecrets())
    logger.info('"%(m)s %(U)s" %(s)s', {"m": "GET", "U": "/x/shpat_inpath", "s": "404"})
    try:
        raise RuntimeError("boom shprt_intraceback")
    except RuntimeError:
        logger.exception("Error handling request %s", "/y?t=shpat_inuri")
    text = stream.getvalue()
    assert '"GET /x/shp***" 404' in text and "boom shp***" in text and "/y?t=shp***" in text
    assert "shpat_" not in text and "shprt_" not in text


def test_configured_logging_masks_other_libraries_warnings_too(capsys):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_ours = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                         logging.getLogger(name).propagate) for name in ("app", "workers", "rq.worker")}
    try:
        configure_logging("INFO")
        logging.getLogger("urllib3.connectionpool").warning("Retrying after error for ?token=shpat_fromlibrary")
        logging.getLogger("urllib3.connectionpool").info("not shown below WARNING")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, (handlers, level, propagate) in saved_ours.items():
            logger = logging.getLogger(name)
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
    err = capsys.readouterr().err
    entry = json.loads(err.strip().splitlines()[-1])
    assert entry["logger"] == "urllib3.connectionpool" and "shp***" in entry["msg"]
    assert "shpat_fromlibrary" not in err and "not shown" not in err
