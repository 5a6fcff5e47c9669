"""The S3 target's requests in flight: each batch in a daemon thread, a bounded number at once.

Not a ThreadPoolExecutor: its threads are joined when the interpreter exits, so one
stuck in a request to a store that never answers would keep the process alive after
the run's summary. These are daemons, and `drain` stops waiting for them once the
run is asked to stop, so the target reports in time whatever the store does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_POLL_S = 0.1  # how soon a waiting dispatcher or drain notices the stop


class Flights(Generic[T]):
    """At most `limit()` jobs running at once, each tagged (the caller's record of a batch).

    `limit` is asked at every check, so it may change while jobs run (a caller adapting
    to the store); `starved` is called whenever `room()` has to wait for it. The first
    exception a job raises is kept in `errors`.
    """

    def __init__(
        self,
        limit: Callable[[], int],
        stop: threading.Event,
        name: str,
        starved: Callable[[], None] = lambda: None,
    ) -> None:
        self._limit = limit
        self._starved = starved
        self._stop = stop
        self._name = name
        self._cond = threading.Condition()
        self._live: dict[int, T] = {}
        self._serial = 0
        self.errors: list[BaseException] = []

    def room(self) -> bool:
        """Wait until fewer than `limit()` jobs run; False when the stop came first."""
        with self._cond:
            while len(self._live) >= self._limit() and not self._stop.is_set():
                self._starved()
                self._cond.wait(_POLL_S)
            return not self._stop.is_set()

    def start(self, tag: T, job: Callable[[], None]) -> None:
        """Run `job` in a daemon thread of its own (call `room()` first)."""
        with self._cond:
            self._serial += 1
            serial = self._serial
            self._live[serial] = tag

        def body() -> None:
            try:
                job()
            except BaseException as exc:  # the dispatcher raises it, with its cause
                with self._cond:
                    self.errors.append(exc)
            finally:
                with self._cond:
                    del self._live[serial]
                    self._cond.notify_all()

        threading.Thread(target=body, name=f"{self._name}-{serial}", daemon=True).start()

    def drain(self, after_stop_s: float) -> list[T]:
        """Wait for every job; once the stop is set, at most `after_stop_s` more.

        Returns the tags of the jobs still running then (empty when all finished):
        they are left to their daemon threads, whose answers nobody waits for.
        """
        deadline: float | None = None
        with self._cond:
            while self._live:
                if self._stop.is_set():
                    now = time.monotonic()
                    deadline = deadline if deadline is not None else now + after_stop_s
                    if now >= deadline:
                        return list(self._live.values())
                self._cond.wait(_POLL_S)
            return []
