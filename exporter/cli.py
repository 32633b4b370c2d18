"""Command line: one parser for the exporter and its `backfill` subcommand; load the config (or
start the demo), then check it, poll once, backfill, or serve until a signal."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import Config, ConfigError, WebConfig, load_config, parse_listen_address
from exporter.demo import DEMO_SCENARIOS
from exporter.pipeline.sharding import shard_from_flag

if TYPE_CHECKING:
    from exporter.app import Overrides
    from exporter.pipeline.persistence import StateFile
    from exporter.serve.webconfig import WebSecurity
    from exporter.simulator import Simulator

log = logging.getLogger("exporter")

PROG = "whatsapp-exporter"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
"""0 ok; 1 a poll (`--once`) or a history read (`backfill`) failed; 2 bad usage or config."""
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The exporter's flags, and `backfill` with its own; the flags both need come from one
    parent, so they are declared once."""
    from exporter.backfill.command import add_backfill_flags

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=os.environ.get("WHATSAPP_EXPORTER_CONFIG", "config.yaml"),
        help="YAML config file (default: $WHATSAPP_EXPORTER_CONFIG or config.yaml)",
    )
    common.add_argument(
        "--demo",
        action="store_true",
        help="run against the built-in simulated Splashify API (no config, no key)",
    )
    common.add_argument(
        "--demo.scenario",
        dest="demo_scenario",
        choices=DEMO_SCENARIOS,
        default=DEMO_SCENARIOS[0],
        help=f"traffic of the simulated API (with --demo; default {DEMO_SCENARIOS[0]})",
    )
    common.add_argument(
        "--shard",
        metavar="INDEX/TOTAL",
        help="only the targets of replica INDEX of TOTAL (from 0: 0/2 and 1/2); "
        "overrides shard: in the config",
    )
    common.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    common.add_argument("--log-format", default="text", choices=["text", "json"])

    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="Prometheus exporter for WhatsApp Business conversation analytics "
        "(Splashify partner API).",
        epilog=f"Subcommand: `{PROG} backfill --help` writes past data for "
        "promtool tsdb create-blocks-from openmetrics.",
    )
    parser.set_defaults(command=None)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="address for /metrics; overrides web.listen_address (default 0.0.0.0:9477)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic auth for the endpoints (exporter-toolkit format)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="web_enable_lifecycle",
        action="store_true",
        help="serve POST /-/reload (SIGHUP reloads either way)",
    )
    parser.add_argument(
        "--persistence.file",
        dest="persistence_file",
        metavar="PATH",
        help="keep the counters' state in this file (SQLite), saved after every poll, so that "
        "they go on across restarts; off when not given",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--once",
        action="store_true",
        help="poll every target once, print the metrics, exit 0 if all succeeded",
    )
    mode.add_argument(
        "--check-config",
        action="store_true",
        help="validate the config, print a one-line verdict, exit 0 or 2",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")

    commands = parser.add_subparsers(title="subcommands", metavar="{backfill}")
    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="write past data as OpenMetrics for promtool tsdb create-blocks-from",
        description="Write past conversation data as OpenMetrics text with timestamps, for "
        "`promtool tsdb create-blocks-from openmetrics`. Each sample is what the live exporter "
        "serves at that time.",
        epilog=f"Example: {PROG} backfill --config config.yaml --start now-8d "
        "--label job=whatsapp-exporter --label instance=exporter:9477 -o history.om && "
        "promtool tsdb create-blocks-from openmetrics history.om /var/lib/prometheus/metrics2",
    )
    backfill.set_defaults(command="backfill")
    add_backfill_flags(backfill)
    return parser


def fail(message: str, command: str | None = None) -> int:
    """One line on stderr, no traceback; exit code 2."""
    prog = f"{PROG} {command}" if command else PROG
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: str | None = args.command
    if args.demo_scenario != DEMO_SCENARIOS[0] and not args.demo:
        return fail("--demo.scenario: only with --demo", command)
    from exporter.app import Overrides

    try:
        listen = None
        if command is None and args.listen_address is not None:
            try:
                listen = parse_listen_address(args.listen_address)
            except ValueError as error:
                raise ValueError(f"--web.listen-address: {error}") from None
        overrides = Overrides(listen_address=listen, shard=shard_from_flag(args.shard))
    except ValueError as error:
        return fail(str(error), command)

    # `_created` series double every counter's output and mean nothing to a poll-based
    # exporter; Prometheus does not need them. Process-wide, so set here, at the edge.
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
    simulator: Simulator | None = None
    try:
        if args.demo:
            # Imported here: the simulator is not needed to run against the real API.
            from exporter.demo import demo_config, start_demo_simulator

            simulator = start_demo_simulator(args.demo_scenario)
            loaded = demo_config(simulator, listen or WebConfig().listen_address)
        else:
            try:
                loaded = load_config(args.config)
            except ConfigError as error:
                if command is None and args.check_config:
                    print(f"config error: {error}", file=sys.stderr)
                    return EXIT_USAGE
                return fail(f"config error: {error}", command)
        if command == "backfill":
            return _backfill(args, loaded, overrides)
        return _exporter(args, loaded, overrides)
    except KeyboardInterrupt:  # Ctrl-C during --once or backfill: no traceback
        return EXIT_INTERRUPTED
    finally:
        if simulator is not None:
            simulator.stop()


def _backfill(args: argparse.Namespace, loaded: Config, overrides: Overrides) -> int:
    from exporter.backfill.command import FetchFailed, UsageError, run_backfill
    from exporter.logs import configure_logging

    configure_logging(args.log_level, args.log_format, [loaded.splashify.api_key.reveal()])
    try:
        # A replica's history holds its own targets, under its own `instance` label.
        run_backfill(args, overrides.apply(loaded))
    except UsageError as error:
        return fail(str(error), "backfill")
    except FetchFailed as failure:
        print(f"{PROG} backfill: {failure}; nothing written", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _exporter(args: argparse.Namespace, loaded: Config, overrides: Overrides) -> int:
    from exporter.app import log_shard, summary

    config = overrides.apply(loaded)
    security = None
    if args.web_config_file is not None:
        from exporter.serve.webconfig import load_web_config

        try:
            security = load_web_config(args.web_config_file)
        except ConfigError as error:
            return fail(str(error))

    if args.check_config:
        print(f"config OK: {summary(config, len(loaded.targets))}")
        return EXIT_OK

    from exporter.logs import configure_logging

    configure_logging(args.log_level, args.log_format, [config.splashify.api_key.reveal()])
    log_shard(config, len(loaded.targets))
    state_file = None
    if args.persistence_file is not None:
        from exporter.pipeline.persistence import PersistenceError, open_state_file

        try:
            state_file = open_state_file(args.persistence_file)
        except PersistenceError as error:
            return fail(str(error))
    try:
        if args.once:
            return _run_once(config, state_file)
        return _serve(
            config,
            None if args.demo else args.config,
            overrides,
            security,
            lifecycle=args.web_enable_lifecycle,
            state_file=state_file,
        )
    finally:
        if state_file is not None:
            state_file.close()


def _run_once(config: Config, state_file: StateFile | None = None) -> int:
    from exporter.app import Exporter

    exporter = Exporter(config, state_file=state_file)
    succeeded = exporter.poll_all_once()
    sys.stdout.write(exporter.exposition().decode())
    return EXIT_OK if succeeded else EXIT_FAILED


SHUTDOWN_GRACE_SECONDS = 0.8
"""How long a stop waits for polls in flight before leaving without them."""


def _serve(
    config: Config,
    config_path: str | None,
    overrides: Overrides,
    security: WebSecurity | None,
    *,
    lifecycle: bool = False,
    state_file: StateFile | None = None,
) -> int:
    from exporter.app import Exporter
    from exporter.serve.statuspage import render_status_page
    from exporter.serve.targets_api import render_targets_json
    from exporter.serve.web import make_app, start_http_server

    exporter = Exporter(config, state_file=state_file)

    def reload_config() -> tuple[bool, str]:
        if config_path is None:
            return False, "no config file to reload (--demo)"
        return exporter.reload_from(config_path, overrides)

    app = make_app(
        exporter.registry,
        exporter.is_ready,
        lambda: render_status_page(exporter.status_view()),
        reload=reload_config if lifecycle else None,
        cache=exporter.cache,
        targets=lambda: render_targets_json(exporter.status_view()),
    )
    if security is not None and security.users:
        from exporter.serve.webconfig import BasicAuth

        app = BasicAuth(app, security.users)
    address = config.web.listen_address
    try:
        server = start_http_server(address, app, security.tls if security else None)
    except OSError as error:
        return fail(f"web.listen_address: cannot listen on {address}: {error.strerror}")
    stop, reload_requested = threading.Event(), threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: object) -> None:
        reload_requested.set()  # done by the reload thread, not inside the signal handler

    def reload_on_request() -> None:
        # Reloads run here, not in the main thread: reading the config can block (a FIFO, a
        # hung network mount), and the main thread must stay free to act on SIGTERM.
        while not stop.is_set():
            if not reload_requested.wait(0.2) or stop.is_set():
                continue
            reload_requested.clear()
            ok, message = reload_config()
            if not ok and config_path is None:
                log.warning("SIGHUP ignored: %s", message)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    threading.Thread(target=reload_on_request, name="reload", daemon=True).start()
    exporter.start_polling()
    log.info(
        "listening on %s, polling %d target(s) every %gs",
        address,
        len(config.targets),
        config.poll.interval,
    )
    stop.wait()
    exporter.stop()
    server.shutdown()
    server.server_close()
    _leave_without_stragglers(SHUTDOWN_GRACE_SECONDS)
    return EXIT_OK


def _leave_without_stragglers(grace: float) -> None:
    """Give polls in flight `grace` seconds, then exit without them.

    A poll in flight may need up to `splashify.timeout` to end, and a reload may be blocked
    reading the config (a FIFO, a hung mount); the interpreter would wait for such threads at
    exit: concurrent.futures joins its workers even when they are daemon threads, as
    APScheduler's are. Nothing is lost by not waiting: a poll cut short was never served, and
    its save (with --persistence.file) is one transaction, which either happened or did not.
    """
    deadline = time.monotonic() + grace
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in others):
        log.info("leaving polls in flight behind")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
