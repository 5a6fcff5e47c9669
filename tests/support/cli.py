"""Run the real CLI in-process and parse what it prints."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cleanup.cli import main


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    lines: list[dict[str, Any]] = field(default_factory=list)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.events(name)
        assert len(found) == 1, f"expected one {name!r} line, got {len(found)}: {self.stdout}"
        return found[0]

    @property
    def summary(self) -> dict[str, Any]:
        """The `run_finished` line, which must be the last line."""
        assert self.lines, f"no output; stderr: {self.stderr}"
        assert self.lines[-1]["event"] == "run_finished", self.stdout
        return self.lines[-1]

    def target(self, name: str) -> dict[str, Any]:
        """The `target_finished` line of one target."""
        found = [line for line in self.events("target_finished") if line["target"] == name]
        assert len(found) == 1, self.stdout
        return found[0]


def run_cli(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Result:
    """Call cleanup.cli.main with its own environment mapping and, optionally, a fixed clock."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        if now is None:
            code = main(list(argv), environ=dict(env or {}))
        else:
            code = main(list(argv), environ=dict(env or {}), clock=lambda: now)
    text = out.getvalue()
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    if _json_format(argv, env or {}) and not {"--help", "-h", "--version"} & set(argv):
        # In json format the process writes JSON lines to stdout and nothing else anywhere.
        assert err.getvalue() == "", f"json format wrote to stderr: {err.getvalue()}"
        assert all(raw.startswith("{") for raw in text.splitlines()), f"non-JSON line: {text}"
    return Result(code, text, err.getvalue(), lines)


def _json_format(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--log-format" and index + 1 < len(args):
            return args[index + 1].lower() == "json"
        if arg.startswith("--log-format="):
            return arg.split("=", 1)[1].lower() == "json"
    return env.get("CLEANUP_LOG_FORMAT", "json").lower() in ("json", "")


def assert_json_only(stdout: str, stderr: str) -> list[dict[str, Any]]:
    """A subprocess run in json format: nothing on stderr, every stdout line a JSON object."""
    assert stderr == "", f"json format wrote to stderr: {stderr}"
    lines = [json.loads(raw) for raw in stdout.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


class Child:
    """`python -m cleanup argv` in a child process, stdout piped for the test to read.

    stderr is drained by a thread: `ended()` fails the test if the run wrote anything
    there (in json format nothing may go there).
    """

    def __init__(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cleanup", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout = self.proc.stdout
        self.pid = self.proc.pid
        self._errors: list[str] = []
        stderr = self.proc.stderr
        self._drain = threading.Thread(target=lambda: self._errors.append(stderr.read()))
        self._drain.start()

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def ended(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the run to end; its exit code and the stdout not read yet."""
        # read() and not communicate(): the caller's iteration may have buffered lines ahead.
        rest = self.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self._drain.join(timeout)
        assert "".join(self._errors) == "", f"json format wrote to stderr: {self._errors}"
        return code, rest
