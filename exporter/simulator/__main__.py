"""`python -m exporter.simulator`: serve the simulated Splashify API in the foreground."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlencode

from exporter.query import AnalyticsQuery, build_fields, customer_path, waba_path
from exporter.simulator.server import Simulator
from exporter.simulator.traffic import DEMO_ACCOUNTS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator",
        description="Serve a simulated Splashify conversation analytics API with demo accounts.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port, 0 for any (default %(default)s)"
    )
    parser.add_argument("--api-key", default="demo-key", help="the accepted Bearer key")
    args = parser.parse_args(argv)
    try:
        simulator = Simulator(api_key=args.api_key, host=args.host, port=args.port).start()
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    with simulator:
        print(f"Simulated Splashify API on {simulator.url}", flush=True)
        for account in DEMO_ACCOUNTS:
            route = waba_path("v25.0", account.waba_id)
            if account.customer_id is not None:
                route += f"  or  {customer_path(account.customer_id)}"
            print(f"  {account.name}: waba_id {account.waba_id}  {route}", flush=True)
        now = int(time.time())
        example = build_fields(
            AnalyticsQuery(start=now - 3 * 3600, end=now, dimensions=("COUNTRY",))
        )
        print(
            f"Try: curl -H 'Authorization: Bearer {args.api_key}' "
            f"'{simulator.url}{waba_path('v25.0', DEMO_ACCOUNTS[0].waba_id)}"
            f"?{urlencode({'fields': example})}'",
            flush=True,
        )
        try:
            # Sleeping in the main thread keeps Ctrl-C deliverable on every platform.
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
