"""Command line: parse flags, load the config, then run once, check, or serve until a signal."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from exporter import __version__
from exporter.config import (
    Config,
    ConfigError,
    ListenAddress,
    WebConfig,
    load_config,
    parse_listen_address,
)
from exporter.sharding import Shard, add_shard_flag, shard_config, shard_from_flag

if TYPE_CHECKING:
    from exporter.webconfig import WebSecurity

log = logging.getLogger("exporter")

EXIT_OK, EXIT_POLL_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whatsapp-exporter",
        description="Prometheus exporter for WhatsApp Business conversation analytics "
        "(Splashify partner API).",
        epilog="Subcommand: `whatsapp-exporter backfill --help` writes past data for "
        "promtool tsdb create-blocks-from openmetrics.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("WHATSAPP_EXPORTER_CONFIG", "config.yaml"),
        help="YAML config file (default: $WHATSAPP_EXPORTER_CONFIG or config.yaml)",
    )
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
    add_shard_flag(parser, "poll")
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
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against the built-in simulated Splashify API (no config, no key)",
    )
    parser.add_argument(
        "--demo.scenario",
        dest="demo_scenario",
        choices=["steady", "marketing-spike"],
        default="steady",
        help="traffic of the simulated API (with --demo; default steady)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--version", action="version", version=f"whatsapp-exporter {__version__}")
    return parser


def _fail(message: str) -> int:
    print(f"whatsapp-exporter: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["backfill"]:
        from exporter.backfill import main as backfill_main

        return backfill_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.demo_scenario != "steady" and not args.demo:
        return _fail("--demo.scenario: only with --demo")
    listen_override = None
    if args.listen_address is not None:
        try:
            listen_override = parse_listen_address(args.listen_address)
        except ValueError as error:
            return _fail(f"--web.listen-address: {error}")
    try:
        shard_override = shard_from_flag(args.shard)
    except ValueError as error:
        return _fail(str(error))

    simulator = None
    if args.demo:
        # Imported here: the simulator is not needed to run against the real API.
        from exporter.demo import demo_config, start_demo_simulator

        simulator = start_demo_simulator(args.demo_scenario)
        loaded = demo_config(simulator, listen_override or WebConfig().listen_address)
    else:
        try:
            loaded = load_config(args.config)
        except ConfigError as error:
            if args.check_config:
                print(f"config error: {error}", file=sys.stderr)
                return EXIT_USAGE
            return _fail(f"config error: {error}")
    config = _as_run(loaded, listen_override, shard_override)

    security = None
    if args.web_config_file is not None:
        from exporter.webconfig import load_web_config

        try:
            security = load_web_config(args.web_config_file)
        except ConfigError as error:
            return _fail(str(error))

    if args.check_config:
        print(f"config OK: {_summary(config, len(loaded.targets))}")
        return EXIT_OK

    from exporter.logs import configure_logging

    configure_logging(args.log_level, args.log_format, [config.splashify.api_key.reveal()])
    _log_shard(config, len(loaded.targets))
    try:
        if args.once:
            return _run_once(config)
        return _serve(
            config,
            None if args.demo else args.config,
            listen_override,
            shard_override,
            security,
            lifecycle=args.web_enable_lifecycle,
        )
    except KeyboardInterrupt:  # Ctrl-C during --once: no traceback
        return 130
    finally:
        if simulator is not None:
            simulator.stop()


def _as_run(
    loaded: Config, listen_override: ListenAddress | None, shard_override: Shard | None
) -> Config:
    """The config as this process runs it: the flags win over the file, then only this shard's
    targets are kept. Applied at start-up and on every reload, so that the flags survive one."""
    config = loaded
    if listen_override is not None:
        config = dataclasses.replace(config, web=WebConfig(listen_address=listen_override))
    return shard_config(config, config.shard if shard_override is None else shard_override)


def _summary(config: Config, loaded_targets: int) -> str:
    """One line about the running config; `loaded_targets` counts the file's, before sharding."""
    names = ", ".join(t.name for t in config.targets) or "none"
    owned = f"{len(config.targets)} target(s)"
    if not config.shard.is_everything:
        owned = f"{len(config.targets)} of {loaded_targets} target(s) in shard {config.shard}"
    return (
        f"{owned} ({names}); poll every {config.poll.interval:g}s, "
        f"lookback {config.poll.lookback:g}s, delay {config.poll.delay:g}s; "
        f"dimensions {', '.join(config.dimensions) or 'none'}"
    )


def _log_shard(config: Config, loaded_targets: int) -> None:
    """Say which shard this replica is, so that a missing or doubled target can be traced."""
    if config.shard.is_everything:
        return
    if not config.targets:
        # Not an error: with more replicas than targets, or by the luck of the hash, a shard
        # can be empty. It still serves its own metrics, and /ready is true at once.
        log.warning(
            "shard %s owns none of the %d target(s): serving only the exporter's own metrics",
            config.shard,
            loaded_targets,
        )
        return
    # Counts, not names: a shard of a large fleet owns hundreds of targets.
    log.info(
        "shard %s: polling %d of %d target(s)", config.shard, len(config.targets), loaded_targets
    )


def _run_once(config: Config) -> int:
    from exporter.app import Exporter

    exporter = Exporter(config)
    succeeded = exporter.poll_all_once()
    sys.stdout.write(exporter.exposition().decode())
    return EXIT_OK if succeeded else EXIT_POLL_FAILED


SHUTDOWN_GRACE_SECONDS = 0.8
"""How long a stop waits for polls in flight before leaving without them."""


def _serve(
    config: Config,
    config_path: str | None,
    listen_override: ListenAddress | None,
    shard_override: Shard | None,
    security: WebSecurity | None,
    *,
    lifecycle: bool = False,
) -> int:
    from exporter.app import Exporter
    from exporter.logs import add_secrets
    from exporter.web import landing_page, make_app, start_http_server

    exporter = Exporter(config)
    reload_lock = threading.Lock()  # SIGHUP and /-/reload: one reload at a time, in order

    def reload_config() -> tuple[bool, str]:
        if config_path is None:
            return False, "no config file to reload (--demo)"
        with reload_lock:
            try:
                return _reload(config_path)
            except Exception as error:  # a bug of ours: the process and the old config stay
                log.exception("config reload failed unexpectedly")
                exporter.metrics.reloaded(False)
                return False, f"internal error: {type(error).__name__}"

    def _reload(path: str) -> tuple[bool, str]:
        try:
            loaded = load_config(path)
        except ConfigError as error:
            log.error("config reload failed, the running config stays: %s", error)
            exporter.metrics.reloaded(False)
            return False, str(error)
        new = _as_run(loaded, listen_override, shard_override)
        add_secrets([new.splashify.api_key.reveal()])
        exporter.reload(new)
        exporter.metrics.reloaded(True)
        _log_shard(new, len(loaded.targets))
        return True, f"config reloaded: {_summary(new, len(loaded.targets))}"

    app = make_app(
        exporter.registry,
        exporter.is_ready,
        lambda: landing_page(p.target.name for p in exporter.pollers),
        reload=reload_config if lifecycle else None,
        cache=exporter.cache,
    )
    if security is not None and security.users:
        from exporter.webconfig import BasicAuth

        app = BasicAuth(app, security.users)
    address = config.web.listen_address
    try:
        server = start_http_server(address, app, security.tls if security else None)
    except OSError as error:
        return _fail(f"web.listen_address: cannot listen on {address}: {error.strerror}")
    stop, reload_requested = threading.Event(), threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: object) -> None:
        reload_requested.set()  # done by the main loop, not inside the signal handler

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
    while not stop.wait(0.2):
        pass
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
    APScheduler's are. Nothing is lost by not waiting: the exporter keeps no state beyond the
    process.
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
