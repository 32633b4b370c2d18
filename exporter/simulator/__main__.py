"""`python -m exporter.simulator`: serve the simulated Splashify API in the foreground."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlencode

from exporter.simulator.server import Simulator
from exporter.simulator.traffic import DEMO_ACCOUNTS, scaled_accounts
from exporter.upstream.query import AnalyticsQuery, build_fields, customer_path, waba_path


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return value


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
    parser.add_argument(
        "--latency",
        type=_non_negative,
        default=0.0,
        metavar="SECONDS",
        help="hold every answer this long before sending it (default %(default)s)",
    )
    parser.add_argument(
        "--accounts",
        type=_positive_int,
        metavar="N",
        help="serve N synthetic accounts (bench-00000, ...) instead of the demo accounts",
    )
    parser.add_argument(
        "--label-sets",
        type=_positive_int,
        default=40,
        metavar="M",
        help="with --accounts: label sets per account (default %(default)s)",
    )
    parser.add_argument(
        "--answer-cache",
        action="store_true",
        help="answer a repeated query from memory (key: account + query with end aligned "
        "down to the half hour); for benchmarks",
    )
    args = parser.parse_args(argv)
    accounts = DEMO_ACCOUNTS
    if args.accounts is not None:
        accounts = scaled_accounts(args.accounts, args.label_sets)
    try:
        simulator = Simulator(
            api_key=args.api_key,
            accounts=accounts,
            host=args.host,
            port=args.port,
            latency=args.latency,
            answer_cache=args.answer_cache,
        ).start()
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    with simulator:
        try:
            print(f"Simulated Splashify API on {simulator.url}", flush=True)
            shown = accounts if len(accounts) <= 10 else accounts[:3]
            for account in shown:
                route = waba_path("v25.0", account.waba_id)
                if account.customer_id is not None:
                    route += f"  or  {customer_path(account.customer_id)}"
                print(f"  {account.name}: waba_id {account.waba_id}  {route}", flush=True)
            if len(shown) < len(accounts):
                print(
                    f"  ... and {len(accounts) - len(shown)} more, to {accounts[-1].name}: "
                    f"waba_id {accounts[-1].waba_id}",
                    flush=True,
                )
            now = int(time.time())
            example = build_fields(
                AnalyticsQuery(start=now - 3 * 3600, end=now, dimensions=("COUNTRY",))
            )
            print(
                f"Try: curl -H 'Authorization: Bearer {args.api_key}' "
                f"'{simulator.url}{waba_path('v25.0', accounts[0].waba_id)}"
                f"?{urlencode({'fields': example})}'",
                flush=True,
            )
            # Sleeping in the main thread keeps Ctrl-C deliverable on every platform.
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            # Also while the banner is still printing: a quiet stop, never a traceback.
            print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
