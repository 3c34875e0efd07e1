"""``python -m devstore [--port 8001] [--host 127.0.0.1]``: serve devstore in this one process.

Reads ``SHOPIFY_API_KEY`` / ``SHOPIFY_API_SECRET`` (and the ``DEVSTORE_*`` settings) from the
environment and ``.env``, like the app, so one configuration serves both.
"""

from __future__ import annotations

import argparse
import logging
import sys

from werkzeug.serving import run_simple


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstore", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    args = parser.parse_args(argv)

    from dotenv import load_dotenv

    from app.config import ROOT
    from devstore import create_app

    load_dotenv(ROOT / ".env")  # never overrides variables already set
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app()
    print(f"devstore on http://{args.host}:{args.port}/  (stores under /stores/<shop>)", flush=True)
    try:
        # Threaded, one process: the state and the delivery thread are in-process.
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    finally:
        app.extensions["devstore_deliverer"].stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
