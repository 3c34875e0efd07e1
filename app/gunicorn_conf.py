"""gunicorn's settings for the ``web`` process: the Procfile, ``make run`` and the benchmarks all load this file.

    gunicorn --config app/gunicorn_conf.py 'app:create_app()'

**Worker class: gevent.** A client that sends half a request and waits must not take the app down.
gunicorn's sync worker serves one connection at a time, so two such clients froze both workers. The
gthread worker does not help as much as it seems: its pool thread waits (at most 5 s) only for the
*first* byte, then reads the rest of the headers and the body with blocking reads and no deadline, so
``threads x workers`` slow clients stall it just the same (measured: 4 half-sent requests froze a
4-thread worker). gevent gives every connection its own greenlet, so a slow client costs a greenlet
and a socket, not a worker: up to ``worker_connections`` of them per worker. psycopg 3 (3.1.14+)
cooperates with gevent on its own; redis-py and requests use the patched sockets.

Beyond a few thousand connections no worker class helps: put a proxy that buffers whole requests
in front (most platforms' routers do; nginx with ``proxy_request_buffering on`` does). See the
README's Deploy section.

This file is loaded by path in gunicorn's master, before gevent patches the standard library in each
worker: it must not import the ``app`` package (that would import ``requests`` and ``ssl`` unpatched).
"""

from __future__ import annotations

import os

# PORT and WEB_CONCURRENCY are the names hosting platforms set; everything else is fixed here.
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gevent"
# Connections one worker holds at once (slow ones included). Keep it below the process's open-file
# limit (ulimit -n); past it, new connections wait in the listen backlog.
worker_connections = 1000
# A worker whose event loop is blocked this long (a CPU-bound request, a C call that never yields)
# is killed and replaced.
timeout = 30
graceful_timeout = 20
# Idle keep-alive connections are closed after this many seconds (behind a proxy that pools
# connections, set it above the proxy's idle timeout).
keepalive = 5
# gunicorn's defaults, stated: the request line, the header count and one header's size are bounded.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Access log on stdout without query strings: OAuth's code, hmac, state and id_token, and shop
# domains, travel in them. %(U)s is the path alone (PATH_INFO); the Referer is left out because it
# carries the referring page's query string.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]
    """Mask token-shaped strings in gunicorn's own log lines (error and access), in every worker.

    Imported here, after gevent has patched the worker and the app has loaded, not at the top of
    this file (see the module docstring).
    """
    from app.logs import MaskSecrets

    for logger in (worker.log.error_log, worker.log.access_log):
        logger.addFilter(MaskSecrets())
