"""Command line: parse arguments, load settings, run, map the outcome to an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from cleanup import __version__, runner
from cleanup.config import (
    CliOptions,
    downward_context,
    early_log_options,
    effective_config,
    load_settings,
)
from cleanup.errors import ConfigError
from cleanup.logs import configure, emit

EXIT_USAGE = 2
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cleanup",
        description="Delete files, S3 objects and PostgreSQL job rows older than their retention.",
    )
    parser.add_argument("--config", metavar="PATH", help="TOML config file")
    age = parser.add_mutually_exclusive_group()
    age.add_argument("--max-age", metavar="DURATION", help="default max age, e.g. 36h, 7d, 2w")
    age.add_argument("--days", metavar="N", help="same as --max-age Nd")
    parser.add_argument("--dry-run", action="store_true", help="delete nothing, report all")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--only", metavar="KINDS", help="comma list of volumes, s3, postgres")
    only.add_argument(
        "--temp-only",
        dest="only",
        action="store_const",
        const="volumes",
        help="alias of --only volumes",
    )
    only.add_argument(
        "--jobs-only",
        dest="only",
        action="store_const",
        const="postgres",
        help="alias of --only postgres",
    )
    parser.add_argument("--max-deletions", metavar="N", help="per-target safety cap (0 = none)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration offline, print it, delete nothing",
    )
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", metavar="FORMAT", help="json or text")
    parser.add_argument("--version", action="version", version=f"cleanup {__version__}")
    return parser


@contextmanager
def _stop_on_signals(stop: threading.Event, received: list[int]) -> Iterator[None]:
    """SIGTERM/SIGINT ask the run to stop after in-flight work; handlers restored after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_EXIT}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _config_error(
    exc: ConfigError, options: CliOptions, environ: Mapping[str, str], run_id: str, checking: bool
) -> int:
    level, fmt = early_log_options(options, environ)
    logger = configure(level, fmt, {"run_id": run_id, **downward_context(environ)})
    emit(
        logger,
        logging.ERROR,
        "config_error",
        "invalid configuration",
        always=True,
        errors=exc.problems,
    )
    for problem in exc.problems:
        print(f"cleanup: configuration error: {problem}", file=sys.stderr)
    if not checking:
        runner.finish(logger, "failed", EXIT_USAGE, [], 0.0, options.dry_run)
    return EXIT_USAGE


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Clock = _utc_now,
) -> int:
    """Entry point; returns the exit code (SPEC section 7)."""
    env = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    options = CliOptions(
        config=args.config,
        max_age=args.max_age,
        days=args.days,
        dry_run=args.dry_run,
        only=args.only,
        max_deletions=args.max_deletions,
        log_level=args.log_level,
        log_format=args.log_format,
        check_config=args.check_config,
    )
    # Handlers go in first, so a signal during start-up still ends with a summary.
    stop = threading.Event()
    received: list[int] = []
    with _stop_on_signals(stop, received):
        return _execute(options, env, clock, stop, received)


def _execute(
    options: CliOptions,
    env: Mapping[str, str],
    clock: Clock,
    stop: threading.Event,
    received: list[int],
) -> int:
    run_id = os.urandom(16).hex()  # uuid would import platform: start-up time matters here
    try:
        settings = load_settings(options, env)
    except ConfigError as exc:
        return _config_error(exc, options, env, run_id, options.check_config)
    if options.check_config:
        print(json.dumps(effective_config(settings)))
        return 0

    started_at = clock()  # the run's one clock reading: every cutoff derives from it
    began = time.monotonic()
    logger = configure(
        settings.log_level, settings.log_format, {"run_id": run_id, **settings.log_context}
    )
    status: str = "failed"
    results: list[runner.TargetResult] = []
    try:
        status, results = runner.run(settings, started_at, stop, logger)
    finally:
        if received:
            status = "interrupted"
            exit_code = SIGNAL_EXIT[signal.Signals(received[0])]
        else:
            exit_code = runner.EXIT_FAILED if status == "failed" else runner.EXIT_OK
        runner.finish(
            logger, status, exit_code, results, time.monotonic() - began, settings.dry_run
        )
    return exit_code


def main_exit() -> None:
    """Console-script entry: exit with main()'s code."""
    sys.exit(main())
