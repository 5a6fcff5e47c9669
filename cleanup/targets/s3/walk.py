"""The S3 target's listing, in several streams over sub-prefixes, behind one bounded queue.

One listing stream gets at most 1000 keys per round trip. Output prefixes usually
hold one sub-prefix per job (`output/<job>/...`), so the prefix is listed with
Delimiter "/": its direct keys are entries, each CommonPrefix is a sub-prefix,
and up to `streams` threads list those concurrently, each one a whole recursive
listing. The CommonPrefixes are streamed too: the top listing waits while as many
sub-prefixes as there are streams wait for one, and every stream waits while its
pages fill the queue. Memory holds a few pages per stream, whatever the bucket.

`streams = 1` lists the prefix in one stream without a delimiter, as before.

Each page comes with its scope, the prefix it was asked for: the target refuses a
key outside it. A stop request, or `close()`, ends every thread at its next
hand-over; `close()` waits CLOSE_WAIT_S at most, and a thread still inside a request
then is a daemon that fetches nothing more. See docs/s3.md, "Parallel listing".
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cleanup.errors import TargetError
from cleanup.targets.s3.listing import Entry, fetch_page
from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PAGES_AHEAD = 2  # pages each stream may have waiting for the batching
CLOSE_WAIT_S = 0.5
_POLL_S = 0.1  # how soon a waiting thread notices a stop or a close
_PAGE, _END, _ERROR = "page", "end", "error"
_NO_MORE = ""  # in the sub-prefix queue: no sub-prefix follows (a real one is never "")


class Walk(Iterator[tuple[str, list[Entry]]]):
    """Yields (scope, entries) pages of the whole prefix; an error of any stream is
    raised here. The first request goes through `probe` (few retries: an unusable store
    fails in seconds), every other one through `work`."""

    def __init__(
        self,
        settings: S3Settings,
        probe: S3Client,
        work: S3Client,
        streams: int,
        name: str,
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._probe, self._work = probe, work
        self._stop = stop
        self._halt = threading.Event()
        self._out: queue.Queue[tuple[str, Any, Any]] = queue.Queue(PAGES_AHEAD * streams)
        self._subs: queue.Queue[str] = queue.Queue(streams)
        self._done = False
        jobs = [self._single] if streams == 1 else [self._top, *([self._stream] * streams)]
        self._producers = len(jobs)
        self._threads = [
            threading.Thread(target=self._guard, args=(job,), name=f"{name}-{n}", daemon=True)
            for n, job in enumerate(jobs)
        ]
        for thread in self._threads:
            thread.start()

    # -- producers (threads) --------------------------------------------------------------

    def _put(self, queue_: queue.Queue[Any], entry: Any) -> bool:
        while not self._halt.is_set():
            try:
                queue_.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _guard(self, job: Any) -> None:
        try:
            job()
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(self._out, (_ERROR, exc, None))
            return
        self._put(self._out, (_END, None, None))

    def _list(self, prefix: str, first: S3Client) -> None:
        """Every page of one recursive listing of `prefix`, into the queue."""
        page = fetch_page(first, self._settings, prefix, None)
        while self._put(self._out, (_PAGE, prefix, page.entries)) and page.next is not None:
            page = fetch_page(self._work, self._settings, prefix, page.next)

    def _single(self) -> None:
        self._list(self._settings.prefix, self._probe)

    def _top(self) -> None:
        """The prefix's direct keys, and its sub-prefixes handed to the streams."""
        prefix = self._settings.prefix
        page = fetch_page(self._probe, self._settings, prefix, None, "/")
        try:
            while True:
                if page.entries and not self._put(self._out, (_PAGE, prefix, page.entries)):
                    return
                for sub in page.prefixes:
                    if not sub.startswith(prefix) or len(sub) <= len(prefix):
                        raise TargetError(
                            f"listing s3://{self._settings.bucket}/{prefix} returned "
                            f"sub-prefix {sub!r} outside the prefix; refusing to delete "
                            "anything more"
                        )
                    if not self._put(self._subs, sub):
                        return
                if page.next is None:
                    return
                page = fetch_page(self._work, self._settings, prefix, page.next, "/")
        finally:
            # One end mark per stream; a halted walk needs none (the streams end anyway).
            for _ in range(self._producers - 1):
                if not self._put(self._subs, _NO_MORE):
                    break

    def _stream(self) -> None:
        while not self._halt.is_set():
            try:
                sub = self._subs.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if sub == _NO_MORE:
                return
            self._list(sub, self._work)

    # -- consumer ------------------------------------------------------------------------

    def __next__(self) -> tuple[str, list[Entry]]:
        while not self._done:
            try:
                kind, value, entries = self._out.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    self._done = True
                continue
            if kind == _PAGE:
                return value, entries
            if kind == _ERROR:
                self._done = True
                raise value
            self._producers -= 1
            if not self._producers:
                self._done = True
        raise StopIteration

    def close(self) -> None:
        """Stop every thread; wait for them CLOSE_WAIT_S at most, in all."""
        self._done = True
        self._halt.set()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
