"""A bounded stop on S3 (docs/events-and-exit-codes.md#exit-codes): after SIGTERM, `run_finished` within 10 s, whatever the store.

Each test runs the CLI as a separate process, lets it reach a store that misbehaves
(a socket that accepts and never answers, a proxy that throttles or holds every
DeleteObjects), waits for the request to arrive there (an accept, an event the proxy
sets), sends a real SIGTERM and times the rest. The target must wind down by itself:
a target the runner had to leave behind (its `error` says so) fails these tests too,
since its counters would not say what became of each key.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.s3.conftest import Bucket
from tests.support.faultproxy import fault_proxy, hold_deletes, slow_down, slow_down_deletes
from tests.support.s3server import S3Endpoint

# docs/events-and-exit-codes.md#exit-codes: run_finished within 10 s of the signal.
CONTRACT_S = 10.0
# The run as a console script, and as plain main() without main_exit's safety net (which
# os._exit()s past threads left behind): then only daemon threads let the process end.
MODULE = [sys.executable, "-m", "cleanup"]
PLAIN_MAIN = [sys.executable, "-c", "import sys\nfrom cleanup.cli import main\nsys.exit(main())"]


def _env(bucket: str, endpoint: str, prefix: str = "stop/") -> dict[str, str]:
    return {
        **os.environ,  # the S3 fixture's throwaway credentials
        "CLEANUP_S3_BUCKET": bucket,
        "CLEANUP_S3_PREFIX": prefix,
        "CLEANUP_S3_ENDPOINT_URL": endpoint,
        "CLEANUP_MAX_AGE": "1s",
    }


def _aged(bucket: Bucket, keys: list[str]) -> None:
    """Objects older than the child's `max_age = 1s` (a child cannot get an injected clock)."""
    bucket.put(keys)
    time.sleep(2.1)


@contextmanager
def _child(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def _terminate(child: subprocess.Popen[str]) -> tuple[float, list[dict[str, Any]]]:
    """SIGTERM, then the seconds until the process exited, and its JSON lines."""
    began = time.monotonic()
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    took = time.monotonic() - began
    assert err == "", f"json format wrote to stderr: {err}"
    return took, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _finished(lines: list[dict[str, Any]]) -> dict[str, Any]:
    found = [line for line in lines if line["event"] == "target_finished"]
    assert len(found) == 1, lines
    return found[0]


def test_sigterm_while_endpoint_accepts_and_never_answers_run_finishes_within_10s_exit_143(
    s3: S3Endpoint,
) -> None:
    """With the listing stuck on a socket that accepted and never answers, SIGTERM ends the
    run within 10 s: the target winds down by itself (`interrupted`, not left behind) and
    the process exits 143 with `run_finished` last."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(60)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        with _child(MODULE, _env("media", endpoint)) as child:
            conn, _ = server.accept()  # the first listing request is on its way
            with conn:
                took, lines = _terminate(child)

    assert child.returncode == 143, lines
    assert took < CONTRACT_S, took
    summary = lines[-1]
    assert (summary["event"], summary["status"], summary["exit_code"]) == (
        "run_finished",
        "interrupted",
        143,
    )
    target = _finished(lines)
    assert target["status"] == "interrupted"
    assert "error" not in target, target["error"]  # not left behind by the runner


def test_sigterm_while_every_request_is_throttled_listing_retries_end_within_10s_exit_143(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """With every request answered 503 SlowDown (and a retry-after that makes the client
    wait between attempts), SIGTERM during the listing's retries ends them: within 10 s
    the target is `interrupted` (the stop, not the store, ended it) and the exit is 143."""
    bucket.put(["stop/a"])
    throttled = threading.Event()
    rule = slow_down(1.0, retry_after_ms=10_000, seen=throttled)
    with (
        fault_proxy(s3.url, before=[rule]) as proxy,
        _child(MODULE, _env(bucket.name, proxy.url)) as child,
    ):
        assert throttled.wait(60), "no request was throttled"
        took, lines = _terminate(child)

    assert child.returncode == 143, lines
    assert took < CONTRACT_S, took
    assert (lines[-1]["event"], lines[-1]["status"]) == ("run_finished", "interrupted")
    target = _finished(lines)
    assert "error" not in target, target["error"]  # neither failed nor left behind
    assert (target["status"], target["scanned"]) == ("interrupted", 0)
    assert bucket.object_keys("stop/") == {"stop/a"}


def test_sigterm_while_every_delete_is_throttled_gives_keys_up_within_10s_exit_143(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """With every DeleteObjects answered 503 SlowDown, SIGTERM during the retries ends them:
    within 10 s the target is `interrupted`, its throttled keys given up as failed
    (`SlowDown`, none counted deleted), and the process exits 143."""
    keys = [f"stop/{i:02d}" for i in range(10)]
    _aged(bucket, keys)
    retried = threading.Event()
    with (
        fault_proxy(s3.url, before=[slow_down_deletes(retried)]) as proxy,
        _child(MODULE, _env(bucket.name, proxy.url)) as child,
    ):
        assert retried.wait(60), "no DeleteObjects was retried"
        took, lines = _terminate(child)

    assert child.returncode == 143, lines
    assert took < CONTRACT_S, took
    assert lines[-1]["event"] == "run_finished"
    assert lines[-1]["status"] == "interrupted"
    target = _finished(lines)
    assert "error" not in target, target["error"]  # not left behind by the runner
    assert (target["status"], target["deleted"], target["failed"]) == ("interrupted", 0, 10)
    failed = [line for line in lines if line["event"] == "item_failed"]
    assert sorted(line["key"] for line in failed) == keys
    assert {line["error"] for line in failed} == {"SlowDown"}
    assert bucket.object_keys("stop/") == set(keys)


def test_sigterm_while_delete_objects_hangs_counts_keys_failed_outcome_unknown_and_exits(
    s3: S3Endpoint, bucket: Bucket
) -> None:
    """With a DeleteObjects that never gets an answer, SIGTERM ends the run within 10 s,
    even without main_exit's os._exit (no thread keeps the process alive); the keys of
    the abandoned request are not counted deleted but failed, with an error saying their
    outcome is unknown."""
    keys = [f"stop/{i:02d}" for i in range(10)]
    _aged(bucket, keys)
    release, seen = threading.Event(), threading.Event()
    with fault_proxy(s3.url, before=[hold_deletes(release, seen)]) as proxy:
        try:
            with _child(PLAIN_MAIN, _env(bucket.name, proxy.url)) as child:
                assert seen.wait(60), "no DeleteObjects arrived"
                took, lines = _terminate(child)
        finally:
            release.set()

    assert child.returncode == 143, lines
    assert took < CONTRACT_S, took
    assert lines[-1]["event"] == "run_finished"
    target = _finished(lines)
    assert "error" not in target, target["error"]  # not left behind by the runner
    assert (target["status"], target["deleted"], target["failed"]) == ("interrupted", 0, 10)
    failed = [line for line in lines if line["event"] == "item_failed"]
    assert sorted(line["key"] for line in failed) == keys
    assert all(line["error"].startswith("outcome unknown") for line in failed), failed
    assert lines[-1]["failed"] == 10 and lines[-1]["deleted"] == 0
    assert bucket.object_keys("stop/") == set(keys)
