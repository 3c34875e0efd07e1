"""Structured logs: one JSON object per line, carrying shop, job id and webhook id when known.

We never pass tokens, secrets or customer data to a logger; as a second line of defence anything
shaped like a Shopify token is masked wherever it appears in a line: the message, the context fields,
an exception's text — and in gunicorn's own error and access lines (``app/gunicorn_conf.py``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

CONTEXT_FIELDS = ("shop", "shop_id", "code_id", "topic", "event_id", "webhook_id", "job_id", "status", "reason",
                  "duration_ms", "method", "path")
# Shopify's token prefixes (shpat_ access, shprt_ refresh, shpca_/shpss_/shppa_/shpua_ other kinds),
# also URL-encoded (shpat%5F…). No word boundary in front: a token glued to other text
# ("token=shpat_…", "id_shpat_…") is masked as well.
TOKEN_RE = re.compile(r"shp(?:at|rt|ca|ss|pa|ua)(?:_|%5[Ff])[A-Za-z0-9]+")
MASK = "shp***"


def mask_secrets(text: str) -> str:
    """``text`` with every token-shaped string replaced by ``shp***``."""
    return TOKEN_RE.sub(MASK, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        # Masked after serialising: one pass covers the message, every field and the traceback.
        return mask_secrets(json.dumps(entry, default=str))


class MaskSecrets(logging.Filter):
    """Masks token-shaped strings in a record formatted by someone else's formatter (gunicorn's).

    The message is rendered and masked in place, and so is the exception text, which the formatter
    then reuses instead of formatting the traceback again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_secrets(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send our loggers (and rq's) to stderr as JSON at ``level``; every other library's warnings too,
    through the root logger, so that no line reaches stderr unmasked. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("app", "workers", "rq.worker"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelName(level)))
