"""Throttling on S3 (docs/s3.md, "Throttling"): fewer requests in flight, throttled keys
resent until deleted, given up only after `throttle_patience` or at the stop, and said so.

moto cannot throttle, so these run against bench/s3standin.py, a real S3 API over
HTTP: its token bucket of deleted keys per second answers per-key `SlowDown` entries
or whole-request 503 SlowDown, and it counts every throttle answer and the requests
in flight, so the counts here are exact. Its old keys are dated 2020 and its fresh
ones a second before seeding, so `max_age = "1d"` splits them without a clock.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.s3.conftest import s3_target, write_config
from tests.support.cli import Child, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


from s3standin import StandIn

CONTRACT_S = 10.0  # after SIGTERM, run_finished within 10 s (docs/s3.md)
NEVER = {"throttle_rate": 1e-9, "throttle_burst": 0}  # a store that throttles every delete

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as s3, pytest.MonkeyPatch.context() as patch:
        for name, value in s3.credentials_env().items():
            patch.setenv(name, value)
        yield s3


def _seed(s3: StandIn, old: int, **spec: Any) -> str:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.seed(bucket=bucket, old=old, fresh=old // 100, **spec)
    return bucket


def _config(path: Path, s3: StandIn, bucket: str, **extra: Any) -> Path:
    target = s3_target(s3.url, bucket, "output/", **extra)
    return write_config(path / "c.toml", [target], progress_interval="1s")


def _stamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(
    ("mode", "counted"), [("keys", "throttled_keys"), ("503", "throttled_requests")]
)
def test_throttled_deletes_are_resent_until_every_old_key_is_gone_and_said_so(
    standin: StandIn, tmp_path: Path, mode: str, counted: str
) -> None:
    """Throttled at 1,500 keys/s (per-key SlowDown or whole 503) for about 3 s, with a
    patience of 2 s: every old key goes, nothing else, exit 0; each throttle answer is
    counted in `throttled`, and `s3_throttled` is logged at most once a second."""
    bucket = _seed(
        standin, 6000, delete_ms=20, throttle_rate=1500, throttle_mode=mode, throttle_burst=500
    )
    config = _config(tmp_path, standin, bucket, throttle_patience="2s")

    result = run_cli(["--config", str(config)])

    check = standin.check(bucket)
    outputs = result.target("outputs")
    assert result.exit_code == 0, result.stdout
    assert (outputs["status"], outputs["deleted"], outputs["failed"]) == ("ok", 6000, 0)
    assert check["ok"] and check["remaining"] == 60 + 16, check
    assert check["stats"][counted] > 0
    assert outputs["throttled"] == check["stats"][counted]
    warned = result.events("s3_throttled")
    assert warned, result.stdout
    assert all(w["level"] == "WARNING" and w["kind"] == "s3" for w in warned)
    assert all(0 < w["throttled"] <= outputs["throttled"] for w in warned)
    assert all(1 <= w["in_flight"] <= 64 for w in warned)
    stamps = [_stamp(w) for w in warned]
    assert all(b - a >= 0.99 for a, b in itertools.pairwise(stamps)), stamps
    assert result.summary["targets"][0]["throttled"] == outputs["throttled"]


def test_unthrottled_run_reports_throttled_zero_and_no_warning(
    standin: StandIn, tmp_path: Path
) -> None:
    """A store that never throttles: `throttled` is 0 in target_finished, no s3_throttled."""
    bucket = _seed(standin, 1500)
    result = run_cli(["--config", str(_config(tmp_path, standin, bucket))])

    assert result.exit_code == 0, result.stdout
    assert result.target("outputs")["throttled"] == 0
    assert result.events("s3_throttled") == []


@pytest.mark.parametrize("mode", ["keys", "503"])
def test_keys_throttled_with_no_deletion_for_the_patience_are_given_up_as_slowdown(
    standin: StandIn, tmp_path: Path, mode: str
) -> None:
    """A store that throttles every delete, `throttle_patience = "2s"`: the run gives the
    keys up by itself (the test only waits for the process), each an `item_failed`
    SlowDown counted failed, none deleted, status partial, exit 1."""
    bucket = _seed(standin, 2500, throttle_mode=mode, **NEVER)
    config = _config(tmp_path, standin, bucket, throttle_patience="2s")

    child = Child(["--config", str(config)])
    code, out = child.ended(timeout=120)

    lines = [json.loads(line) for line in out.splitlines()]
    finished = [line for line in lines if line["event"] == "target_finished"]
    failed = [line for line in lines if line["event"] == "item_failed"]
    assert code == 1, out[-2000:]
    assert len(finished) == 1
    outputs = finished[0]
    assert (outputs["status"], outputs["deleted"], outputs["failed"]) == ("partial", 0, 2500)
    assert outputs["throttled"] > 0
    assert len(failed) == 2500 and {line["error"] for line in failed} == {"SlowDown"}
    assert any(line["event"] == "s3_throttled" for line in lines)
    assert standin.check(bucket)["old_left"] == 2500


@pytest.mark.parametrize("mode", ["keys", "503"])
def test_sigterm_while_every_delete_is_throttled_ends_the_run_within_10s_exit_143(
    standin: StandIn, tmp_path: Path, mode: str
) -> None:
    """With every delete throttled and the default patience (5 min), SIGTERM once the run
    says it is throttled ends it within 10 s: exit 143, the target `interrupted` by itself
    (not left behind), the throttled keys given up as SlowDown, nothing counted twice."""
    bucket = _seed(standin, 3000, delete_ms=50, throttle_mode=mode, **NEVER)
    child = Child(["--config", str(_config(tmp_path, standin, bucket))])
    seen: list[dict[str, Any]] = []
    for raw in child.stdout:
        seen.append(json.loads(raw))
        if seen[-1]["event"] == "s3_throttled":
            break
    assert seen and seen[-1]["event"] == "s3_throttled", seen

    began = time.monotonic()
    child.send_signal(signal.SIGTERM)
    code, out = child.ended(timeout=60)
    took = time.monotonic() - began

    lines = seen + [json.loads(line) for line in out.splitlines()]
    outputs = next(line for line in lines if line["event"] == "target_finished")
    failed = [line for line in lines if line["event"] == "item_failed"]
    assert code == 143, lines[-3:]
    assert took < CONTRACT_S, took
    assert (lines[-1]["event"], lines[-1]["status"]) == ("run_finished", "interrupted")
    assert outputs["status"] == "interrupted" and "error" not in outputs, outputs
    assert outputs["deleted"] == 0 and outputs["failed"] == outputs["matched"] > 0
    assert len(failed) == outputs["failed"] and {f["error"] for f in failed} == {"SlowDown"}
    assert standin.check(bucket)["old_left"] == 3000


def test_deletes_in_flight_grow_past_four_when_latency_is_the_limit(
    standin: StandIn, tmp_path: Path
) -> None:
    """At 400 ms per DeleteObjects and 30 batches ready, more than 4 requests are in
    flight at once (the window grows while answers are clean), at most `max_in_flight`."""
    bucket = _seed(standin, 30_000, delete_ms=400)
    result = run_cli(["--config", str(_config(tmp_path, standin, bucket))])

    peak = standin.check(bucket)["stats"]["peak_in_flight"]["DeleteObjects"]
    assert result.exit_code == 0, result.stdout
    assert result.target("outputs")["deleted"] == 30_000
    assert 4 < peak <= 64, peak


def test_max_in_flight_bounds_the_deletes_in_flight(standin: StandIn, tmp_path: Path) -> None:
    """`max_in_flight = 2`: never more than 2 DeleteObjects at once, however slow the store."""
    bucket = _seed(standin, 12_000, delete_ms=200)
    config = _config(tmp_path, standin, bucket, max_in_flight=2)

    result = run_cli(["--config", str(config)])

    peak = standin.check(bucket)["stats"]["peak_in_flight"]["DeleteObjects"]
    assert result.exit_code == 0, result.stdout
    assert result.target("outputs")["deleted"] == 12_000
    assert peak == 2, peak
