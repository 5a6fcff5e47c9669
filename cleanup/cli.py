"""Command line: parse arguments, load settings, run, map the outcome to an exit code.

In json format the process writes nothing but JSON lines, and only to stdout (a
pod's stdout and stderr end up in one stream): a bad argument is a
`config_error` line followed by `run_finished`, never argparse text on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import NoReturn

from cleanup import __version__, runner
from cleanup.config import (
    CliOptions,
    Settings,
    downward_context,
    effective_config,
    load_settings,
    log_options,
    warning_fields,
)
from cleanup.errors import ConfigError
from cleanup.logs import configure, emit
from cleanup.redact import redact_value

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _UsageError(Exception):
    """A command-line mistake: reported as a configuration error, in the log format."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    parser.add_argument("--target", metavar="NAMES", help="comma list of target names to run")
    parser.add_argument("--max-deletions", metavar="N", help="per-target safety cap (0 = none)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration offline, print it, delete nothing",
    )
    mode.add_argument(
        "--preflight",
        action="store_true",
        help="check that every selected target is reachable and deletable, change nothing",
    )
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", metavar="FORMAT", help="json or text")
    parser.add_argument("--version", action="version", version=f"cleanup {__version__}")
    return parser


class _Stop:
    """The run's stop request: set by SIGTERM/SIGINT, remembering the first signal."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()


@contextmanager
def _stop_on_signals(stop: _Stop) -> Iterator[None]:
    """SIGTERM/SIGINT ask the run to stop after in-flight work; handlers restored after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.request(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_EXIT}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _options_from(argv: Sequence[str]) -> CliOptions:
    """Only the log options, read leniently from arguments that failed to parse."""
    found: dict[str, str] = {}
    for index, arg in enumerate(argv):
        for flag in ("--log-format", "--log-level"):
            if arg == flag and index + 1 < len(argv):
                found[flag] = argv[index + 1]
            elif arg.startswith(flag + "="):
                found[flag] = arg.split("=", 1)[1]
    return CliOptions(log_format=found.get("--log-format"), log_level=found.get("--log-level"))


def _config_error(
    exc: ConfigError, options: CliOptions, environ: Mapping[str, str], run_id: str
) -> int:
    level, fmt = exc.log_options
    logger = configure(level, fmt, {"run_id": run_id, **downward_context(environ)})
    emit(
        logger,
        logging.ERROR,
        "config_error",
        "invalid configuration: " + "; ".join(exc.problems),
        always=True,
        errors=exc.problems,
    )
    if not options.check_config:
        runner.finish(logger, "failed", runner.EXIT_USAGE, [], 0.0, options.dry_run)
    return runner.EXIT_USAGE


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Clock = _utc_now,
) -> int:
    """Entry point; returns the exit code."""
    env = os.environ if environ is None else environ
    args_list = list(sys.argv[1:] if argv is None else argv)
    run_id = os.urandom(16).hex()  # uuid would import platform: start-up time matters here
    try:
        args = build_parser().parse_args(args_list)
    except _UsageError as exc:
        # The arguments did not parse: the log options are read leniently from them.
        lenient = _options_from(args_list)
        error = ConfigError([f"command line: {exc}"], log_options(lenient, env))
        return _config_error(error, lenient, env, run_id)
    except SystemExit as exc:  # --help and --version (text on stdout, as asked)
        return exc.code if isinstance(exc.code, int) else runner.EXIT_USAGE
    options = CliOptions(
        config=args.config,
        max_age=args.max_age,
        days=args.days,
        dry_run=args.dry_run,
        only=args.only,
        targets=args.target,
        max_deletions=args.max_deletions,
        log_level=args.log_level,
        log_format=args.log_format,
        check_config=args.check_config,
    )
    # Handlers go in first, so a signal during start-up still ends with a summary.
    stop = _Stop()
    with _stop_on_signals(stop):
        try:
            settings = load_settings(options, env)
        except ConfigError as exc:
            return _config_error(exc, options, env, run_id)
        if options.check_config:
            print(json.dumps(redact_value(effective_config(settings))), flush=True)
            return 0
        return _execute(settings, clock, stop, run_id, preflight=args.preflight)


def _execute(settings: Settings, clock: Clock, stop: _Stop, run_id: str, *, preflight: bool) -> int:
    started_at = clock()  # the run's one clock reading: every cutoff derives from it
    began = time.monotonic()
    logger = configure(
        settings.log_level, settings.log_format, {"run_id": run_id, **settings.log_context}
    )
    _log_thread_errors(logger)
    for warning in settings.warnings:
        emit(logger, logging.WARNING, "config_warning", warning.message, **warning_fields(warning))
    results: list[runner.TargetResult] = []
    extra: dict[str, object] = {"preflight": True} if preflight else {}
    code = runner.EXIT_FAILED
    try:
        step = runner.preflight if preflight else runner.run
        results = step(settings, started_at, stop.event, logger)
        code = runner.exit_code(results)
    except Exception as exc:  # a bug outside any target: still a JSON line and a summary
        emit(
            logger,
            logging.ERROR,
            "internal_error",
            "unexpected error outside the targets",
            always=True,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )
    finally:
        if stop.signum is not None:
            status, code = "interrupted", SIGNAL_EXIT[signal.Signals(stop.signum)]
        else:
            status = "ok" if code == runner.EXIT_OK else "failed"
        runner.finish(
            logger, status, code, results, time.monotonic() - began, settings.dry_run, **extra
        )
    return code


def _log_thread_errors(logger: logging.Logger) -> None:
    """An exception that escapes a helper thread is a JSON line too, not stderr text."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        emit(
            logger,
            logging.ERROR,
            "internal_error",
            "unexpected error in a helper thread",
            always=True,
            thread_name=args.thread.name if args.thread else None,
            error=f"{args.exc_type.__name__}: {args.exc_value}",
            traceback="".join(traceback.format_exception(args.exc_value)),
        )

    threading.excepthook = hook


def main_exit() -> None:
    """Console-script entry: exit with main()'s code.

    A thread left behind on a store that never answers must not hold the exit: the
    summary is out, so flush and leave without waiting for it.
    """
    code = main()
    sys.stdout.flush()
    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main_thread):
        os._exit(code)
    sys.exit(code)
