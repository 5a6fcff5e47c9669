"""Run a page source ahead in its own thread, behind a bounded queue.

The listing is the one sequential part of the S3 pipeline: page n+1 can only be
asked for once page n has been read. Producing pages in a thread lets the next
request go out while the caller is still cutting the previous page into batches,
and the bound keeps at most `depth` pages waiting, so memory stays flat.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"
_POLL_S = 0.1  # how soon a waiting consumer or producer notices a stop or a close
# How long close() waits for a producer still inside a request. A producer left behind
# is a daemon that fetches nothing more: its next hand-over sees the close and ends it.
CLOSE_WAIT_S = 0.5


class Prefetch(Iterator[T], Generic[T]):
    """Iterates what `source()` yields; a thread, started at once, runs at most `depth` ahead.

    An exception in the source is raised here, in the consumer. Iteration ends early
    when `stop` is set, even while the producer is stuck in a request that never returns;
    `close()` stops the producer and waits for it, but never longer than CLOSE_WAIT_S.
    """

    def __init__(
        self, source: Callable[[], Iterator[T]], depth: int, name: str, stop: threading.Event
    ) -> None:
        self._source = source
        self._stop = stop
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._done = False
        self._producer = threading.Thread(target=self._produce, name=name, daemon=True)
        self._producer.start()

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._halt.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source():
                if not self._put((_ITEM, item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put((_ERROR, exc))
            return
        self._put((_END, None))

    def __next__(self) -> T:
        while not self._done:
            try:
                kind, value = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    self._done = True
                continue
            if kind == _ITEM:
                item: T = value
                return item
            self._done = True
            if kind == _ERROR:
                raise value
        raise StopIteration

    def close(self) -> None:
        self._done = True
        self._halt.set()
        self._producer.join(CLOSE_WAIT_S)
