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


class Prefetch(Iterator[T], Generic[T]):
    """Iterates what `source()` yields; a thread, started at once, runs at most `depth` ahead.

    An exception in the source is raised here, in the consumer. `close()` stops the
    producer and waits for it, so no request is still running once the caller moved on.
    """

    def __init__(self, source: Callable[[], Iterator[T]], depth: int, name: str) -> None:
        self._source = source
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._done = False
        self._producer = threading.Thread(target=self._produce, name=name, daemon=True)
        self._producer.start()

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._halt.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
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
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
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
        self._producer.join()
