"""Command line: ``gateway run`` serves, ``gateway check`` validates a config file,
``gateway reload`` and ``gateway stop`` signal the running master of a config, ``gateway routes``
shows what it serves, ``gateway import apisix`` converts an APISIX standalone config, ``gateway
config export/import`` moves resources between a file and etcd."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from gateway import __version__


def parse_workers(value: str) -> int | None:
    if value == "auto":
        return len(os.sched_getaffinity(0)) or 1
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("workers must be a positive integer or 'auto'") from None
    if count < 1:
        raise argparse.ArgumentTypeError("workers must be >= 1")
    return count


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.server.master import run_master

    logging.basicConfig(level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO"),
                        format="%(asctime)s [master %(process)d] %(levelname)s %(message)s",
                        stream=sys.stderr)
    return run_master(args.config, args.workers)


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError
    from gateway.server.master import load_and_check

    try:
        config = load_and_check(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"{args.config}: {len(exc.issues)} error(s)", file=sys.stderr)
        return 2
    if config.gateway.etcd is not None:
        print(f"{args.config}: ok (etcd mode: the resources are under {config.gateway.etcd.prefix} "
              f"in etcd; `gateway config export -c {args.config}` shows them)")
        return 0
    print(f"{args.config}: ok ({len(config.routes)} routes, {len(config.upstreams)} upstreams, "
          f"{len(config.consumers)} consumers)")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    import signal

    from gateway.server.running import NotRunning, signal_master

    try:
        pid = signal_master(args.config, signal.SIGHUP)
    except NotRunning as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    print(f"gateway: asked master {pid} to reload (its log says what applied)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from gateway.server.running import STOP_SIGNALS, NotRunning, signal_master, wait_gone

    try:
        pid = signal_master(args.config, STOP_SIGNALS[args.graceful])
    except NotRunning as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    if args.timeout > 0 and not wait_gone(pid, args.timeout):
        print(f"gateway: master {pid} still runs after {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from gateway.migrate.command import import_apisix

    return import_apisix(args.file, args.output)


def cmd_routes(args: argparse.Namespace) -> int:
    from gateway.server.live_routes import show_routes

    return show_routes(args.config, args.json)


def cmd_config(args: argparse.Namespace) -> int:
    from gateway.etcd.transfer import export_config, import_config

    if args.action == "export":
        return export_config(args.config, args.to)
    return import_config(args.config, args.file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the master and its workers")
    run.add_argument("-c", "--config", help="config file (default: the embedded demo config)")
    run.add_argument("-w", "--workers", type=parse_workers, default=None,
                     help="worker processes: a number or 'auto' (one per core); "
                          "default: gateway.workers from the config")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate a config file and print every error")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check)
    reload = sub.add_parser("reload", help="apply the config file now (SIGHUP); workers are "
                            "restarted one at a time when the change needs new processes")
    reload.add_argument("-c", "--config", help="the running gateway's config file")
    reload.set_defaults(func=cmd_reload)
    stop = sub.add_parser("stop", help="stop a running gateway (at once, or --graceful)")
    stop.add_argument("-c", "--config", help="the running gateway's config file")
    stop.add_argument("--graceful", action="store_true",
                      help="drain (SIGTERM): stop accepting, finish in-flight requests up to "
                           "graceful_shutdown_timeout, then exit")
    stop.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for the master to exit (0: do not wait)")
    stop.set_defaults(func=cmd_stop)
    routes = sub.add_parser("routes", help="the routes a running gateway serves, and the config "
                            "version each worker runs")
    routes.add_argument("-c", "--config", help="the running gateway's config file")
    routes.add_argument("--json", action="store_true", help="print JSON instead of a table")
    routes.set_defaults(func=cmd_routes)
    imp = sub.add_parser("import", help="convert another gateway's config into this one's; "
                         "what is not supported is listed, not dropped silently")
    imp.add_argument("kind", choices=["apisix"], help="apisix: APISIX standalone apisix.yaml")
    imp.add_argument("file", help="the file to convert")
    imp.add_argument("-o", "--output", help="where to write the result (default: stdout); "
                     "written only when it passes `gateway check`")
    imp.set_defaults(func=cmd_import)
    config = sub.add_parser("config", help="move the resources between a YAML file and etcd "
                            "(the etcd settings are the node file's gateway.store)")
    config_sub = config.add_subparsers(dest="action", required=True)
    export = config_sub.add_parser("export", help="etcd's resources as a YAML config file")
    export.add_argument("-c", "--config", required=True, help="the node file (etcd mode)")
    export.add_argument("--to", help="the file to write (default: stdout)")
    export.set_defaults(func=cmd_config)
    into = config_sub.add_parser("import", help="make etcd hold exactly the resources of a "
                                 "config file (checked first; keys it lacks are deleted)")
    into.add_argument("file", help="a config file (its gateway: section is not imported)")
    into.add_argument("-c", "--config", required=True, help="the node file (etcd mode)")
    into.set_defaults(func=cmd_config)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
