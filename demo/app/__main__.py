"""Run the bookshop: ``python -m tracehound.demo.app [--host H] [--port P] [--seed-only]``.

Meant to run under ``opentelemetry-instrument``; ``--seed-only`` creates and seeds the database
and exits; the demo runner does that first, uninstrumented, then starts the app with ``--no-seed``
so seeding makes no traces.
Configuration comes from the ``TRACEHOUND_DEMO_*`` environment variables (see the package docstring).
"""

from __future__ import annotations

import argparse
import time

from . import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description="The tracehound demo bookshop.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--seed-only", action="store_true", help="create and seed the database, then exit")
    parser.add_argument("--no-seed", action="store_true", help="skip creating/seeding (already done)")
    args = parser.parse_args()
    started = time.perf_counter()
    app = create_app(seed_data=not args.no_seed)
    if args.seed_only:
        print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
        return
    app.run(host=args.host, port=args.port, threaded=True, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
