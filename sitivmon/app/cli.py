"""Command line: `sitivmon run|check|poll|demo|usage|allocate|report|store`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from sitivmon import __version__
from sitivmon.aio import run
from sitivmon.allocation import cli as allocation_cli
from sitivmon.allocation.service import InputError, ReportService
from sitivmon.app import demo as demo_cli
from sitivmon.app import migrate as store_cli
from sitivmon.app.config import (
    ConfigError,
    ShardConfig,
    SitivmonConfig,
    load_config,
    replica_problems,
    shard_problems,
)
from sitivmon.app.daemon import Composition, report_service, run_daemon
from sitivmon.app.oneshot import poll_once
from sitivmon.config.model import Commune
from sitivmon.engine.selection import ALL_TARGETS
from sitivmon.logs import setup_logging
from sitivmon.usage import cli as usage_cli
from sitivmon.usage.backends import usage_reader_factory


def _load_or_report(path: Path) -> SitivmonConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration ({len(exc.issues)} error(s))", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return None


def _config_for(path: Path) -> SitivmonConfig:
    """The root config of `usage`, `report` and `allocate --config`: a bad file is an input error
    (exit 2, the loader's located message)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise InputError(str(exc)) from None


def _usage_inputs(path: Path) -> usage_cli.UsageInputs:
    config = _config_for(path)
    return usage_cli.UsageInputs(
        open_store=usage_reader_factory(config.usage, config.state_dir),
        communes=config.communes,
        timezone=config.timezone,
        links=config.links,
    )


def _report_service(path: Path) -> ReportService:
    return report_service(path, _config_for(path))


def _communes(path: Path) -> tuple[Sequence[Commune], str]:
    config = _config_for(path)
    return config.communes, config.timezone


def cmd_check(args: argparse.Namespace) -> int:
    config = _load_or_report(args.config)
    if config is None:
        return 2
    print(
        f"{args.config}: OK ({len(config.communes)} communes, {len(config.targets)} targets, {len(config.links)} links)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_format or "plain", args.log_level or "info")
    config = _load_or_report(args.config)
    if config is None:
        return 2
    # The command line wins; else the config's `log` section (SITIVMON_LOG__LEVEL and __FORMAT included).
    setup_logging(args.log_format or config.log.format, args.log_level or config.log.level)
    shard = args.shard or config.shard
    if shard is not None:
        for _, message in shard_problems(shard, config.usage):
            print(f"sitivmon: {message}", file=sys.stderr)
            return 2
    replica = args.replica or config.replica
    if replica is not None:
        for _, message in replica_problems(replica, config.usage):
            print(f"sitivmon: {message}", file=sys.stderr)
            return 2
    composition = Composition(selector=ALL_TARGETS if shard is None else shard.selector(), replica=replica or "")
    try:
        return run(run_daemon(args.config, config, args.listen, composition=composition))
    except OSError as exc:
        print(f"sitivmon: cannot start: {exc}", file=sys.stderr)
        return 1


def cmd_poll(args: argparse.Namespace) -> int:
    setup_logging("plain", "warning")
    config = _load_or_report(args.config)
    if config is None:
        return 2
    if args.target not in config.target_by_name():
        known = ", ".join(sorted(config.target_by_name())) or "none"
        print(f"unknown target {args.target!r} (known: {known})", file=sys.stderr)
        return 2
    report = run(poll_once(config, args.target, base_dir=args.config.resolve().parent, samples=args.samples))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report.get("error") is None else 1


def parse_shard(text: str) -> ShardConfig:
    """`I/N` (`--shard 2/3`): shard I of N, 1 <= I <= N."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError("expected I/N")
        return ShardConfig(index=int(index), count=int(count))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise argparse.ArgumentTypeError(f"{text!r}: a shard is I/N with 1 <= I <= N") from exc


def parse_replica(text: str) -> str:
    """`a`, `b`: a lowercase letter then up to 7 lowercase letters or digits."""
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a replica is a lowercase letter then up to 7 letters or digits")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sitivmon", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sitivmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--listen", help="HOST:PORT for /metrics (overrides the config)")
    run.add_argument("--log-format", choices=["plain", "json"], default=None)
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="overrides the config's log.level (default info)",
    )
    run.add_argument(
        "--shard",
        type=parse_shard,
        default=None,
        metavar="I/N",
        help="poll shard I of N (overrides the config's shard section; docs/sharding.md)",
    )
    run.add_argument(
        "--replica",
        type=parse_replica,
        default=None,
        metavar="NAME",
        help="this daemon's name in a replica pair, e.g. a or b (overrides the config's replica; docs/scale.md)",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("--config", type=Path, required=True)
    check.set_defaults(func=cmd_check)

    poll = sub.add_parser("poll", help="poll one target once (or a few times) and print normalised readings")
    poll.add_argument("--config", type=Path, required=True)
    poll.add_argument("--target", required=True)
    poll.add_argument("--samples", type=int, default=2, help="polls to make (2 gives counter deltas)")
    poll.set_defaults(func=cmd_poll)

    usage_cli.register(sub, inputs_for=_usage_inputs)
    store_cli.register(sub, inputs_for=_usage_inputs)
    allocation_cli.register(sub, service_for=_report_service, communes_for=_communes)
    demo_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
