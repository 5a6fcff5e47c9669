"""How many DeleteObjects the S3 target keeps in flight, adapted to the store's answers.

The store, not this process, sets the pace: at real S3 latency a few requests in
flight leave most of the time waiting, and under throttling more requests only
compete with their own retries. So the window grows while answers are clean and
the window was in use (one more per clean answer until the first throttle, as TCP's
slow start, then one more per window's worth: additive increase) and halves at a
throttled answer (multiplicative decrease), at most once per window of requests
sent before the previous cut. See docs/s3.md, "Throttling".

Every throttle answer (a per-key `SlowDown` entry, a whole answer 503 / `SlowDown`,
listing ones included) is counted in `throttled`, and an `s3_throttled` WARNING
says so at most once per progress interval. The time of the last deletion decides
when a throttled key is given up (`throttle_patience`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable

from cleanup.targets.base import TargetContext
from cleanup.targets.s3.client import RETRYABLE_CODES, THROTTLE_CODES

START = 4  # the window before any answer: enough for a fast store, gentle on a slow one
_POLL_S = 0.1  # how soon a sender waiting for the window notices the stop
# Back-off before throttled keys are sent again, doubled for each answer in a row that
# deleted none of them. Short: the window, not this wait, is what lowers the rate, and
# a long wait would leave a rate-limited store's allowance unused.
RETRY_BASE_S = 0.05
RETRY_MAX_S = 1.0


class Pace:
    """The window of DeleteObjects in flight (at most `ceiling`), throttle count and patience."""

    def __init__(
        self,
        ctx: TargetContext,
        ceiling: int,
        patience_s: float,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ctx = ctx
        self._ceiling = ceiling
        self._patience_s = patience_s
        self._interval_s = interval_s
        self._clock = clock
        self._cond = threading.Condition()
        self._window = float(min(START, ceiling))
        self._busy = 0
        self._cuts = 0  # decreases so far: an answer to a request sent before the last one
        self._slow_start = True  # no cut yet
        self._wanted = False  # someone waited for room since the window last grew
        self._warned_at: float | None = None
        self._deleted_at = clock()
        self.throttled = 0
        ctx.summary["throttled"] = 0

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return int(self._window)

    def acquire(self, wait: bool = True) -> int | None:
        """Wait for room in the window (or not: `wait=False`); the cut count to hand back
        to `release`, or None when the stop came first."""
        stop = self._ctx.stop
        with self._cond:
            while wait and self._busy >= int(self._window):
                if stop.is_set():
                    return None
                self._wanted = True
                self._cond.wait(_POLL_S)
            self._busy += 1
            return self._cuts

    def starved(self) -> None:
        """A batch is ready but the window is full: the window is what holds the pace."""
        self._wanted = True

    def release(self, cuts: int, deleted: int, throttles: int, trouble: bool) -> None:
        """One answer: `deleted` keys gone, `throttles` throttle answers in it, `trouble`
        when anything in it is to be retried (throttled or a transient error)."""
        with self._cond:
            # Grown only while it is what limits the pace, not while the listing does.
            full = self._wanted or self._busy >= int(self._window)
            self._busy -= 1
            if deleted:
                self._deleted_at = self._clock()
            if trouble:
                if cuts == self._cuts:  # not yet cut for this window's trouble
                    self._window = max(1.0, self._window / 2)
                    self._cuts += 1
                    self._slow_start = False
            elif full:
                step = 1.0 if self._slow_start else 1.0 / self._window
                self._window = min(float(self._ceiling), self._window + step)
                self._wanted = False
            self._cond.notify_all()
        if throttles:
            self.note(throttles)

    def answered(self, cuts: int, sent: int, failed: Iterable[str]) -> None:
        """A DeleteObjects answer for `sent` keys, with the codes of the keys it did not delete."""
        codes = list(failed)
        throttles = sum(code in THROTTLE_CODES for code in codes)
        trouble = any(code in RETRYABLE_CODES for code in codes)
        self.release(cuts, sent - len(codes), throttles, trouble)

    def note(self, throttles: int = 1) -> None:
        """Count throttle answers (also the listing's) and warn, once per interval at most."""
        with self._cond:
            self.throttled += throttles
            self._ctx.summary["throttled"] = self.throttled
            now = self._clock()
            due = self._warned_at is None or now - self._warned_at >= self._interval_s
            if due:
                self._warned_at = now
            count, allowed = self.throttled, int(self._window)
        if due:
            self._ctx.event(
                logging.WARNING,
                "s3_throttled",
                "the store is throttling requests: fewer sent at once, throttled keys retried",
                throttled=count,
                in_flight=allowed,
            )

    def backoff(self, idle: int) -> float:
        """Seconds to wait before resending keys after `idle` answers in a row that deleted
        none of them; 0 when they are to be given up: nothing under the target was deleted
        for the patience."""
        with self._cond:
            left = self._patience_s - (self._clock() - self._deleted_at)
        if left <= 0:
            return 0.0
        delay = min(RETRY_MAX_S, RETRY_BASE_S * 2.0**idle) * (0.5 + random.random() / 2)
        return min(delay, left)
