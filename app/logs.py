"""Structured logs: one JSON object per line, carrying shop, job id and webhook id when known.

We never pass tokens, secrets or customer data to a logger; as a second line of defence the
formatter masks anything shaped like a Shopify token.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

CONTEXT_FIELDS = ("shop", "shop_id", "code_id", "topic", "event_id", "webhook_id", "job_id", "status", "reason",
                  "duration_ms", "method", "path")
TOKEN_RE = re.compile(r"\bshp(?:at|rt|ca|ss|pa|ua)_[A-Za-z0-9]+")


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
        return TOKEN_RE.sub("shp***", json.dumps(entry, default=str))


def configure_logging(level: str = "INFO") -> None:
    """Send our loggers (and rq's) to stderr as JSON. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("app", "workers", "rq.worker"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
