"""S3 target: delete objects (or every version) older than the cutoff under one prefix.

A streaming pipeline: the calling thread lists pages (ListObjectsV2, or
ListObjectVersions for `versions = "all"`) and cuts the eligible items into
DeleteObjects batches of at most 1000 keys; a small pool sends them, with at
most IN_FLIGHT batches alive at once. Memory therefore holds a page and a few
batches, whatever the size of the bucket.

The deletion budget is taken for a whole batch before it is sent and only the
granted part is sent, so batches in flight can never take the target past
`max_deletions`; keys that fail are given back.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from cleanup.errors import TargetError
from cleanup.globs import Excluder
from cleanup.targets.base import TargetContext
from cleanup.targets.s3.client import (
    MAX_ATTEMPTS,
    PROBE_ATTEMPTS,
    RETRYABLE_CODES,
    describe,
    error_code,
    make_client,
)
from cleanup.targets.s3.prefetch import Prefetch
from cleanup.targets.s3.settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BATCH_SIZE = 1000  # the DeleteObjects maximum
IN_FLIGHT = 4  # batches being sent at once; the store, not this process, is the bottleneck
PAGES_AHEAD = 2  # listing pages fetched ahead of the batching
# Rounds for keys that a DeleteObjects answer reports as throttled, on top of botocore's
# own retries of whole requests.
KEY_RETRY_ROUNDS = 6
KEY_RETRY_BASE_S = 0.2
KEY_RETRY_MAX_S = 5.0


class Item(NamedTuple):
    key: str
    version_id: str | None  # None: the current object (versions = "current")
    size: int


class _Fatal(Exception):
    """A batch failed as a whole in a way retrying cannot fix: stop the target."""


class S3Target:
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.all_versions = settings.versions == "all"
        self.excluder = Excluder(settings.exclude)
        self._lock = threading.Lock()  # counters written by the sending threads

    # -- listing ---------------------------------------------------------------------------

    def _pages(self, probe: S3Client, work: Future[S3Client]) -> Iterator[dict[str, Any]]:
        """Listing pages; the first through the probe client, so an unusable store fails fast,
        the others through the work client (built meanwhile)."""
        bucket, prefix = self.settings.bucket, self.prefix
        api = probe
        if self.all_versions:
            markers: dict[str, Any] = {}
            while True:
                versions = api.list_object_versions(Bucket=bucket, Prefix=prefix, **markers)
                yield dict(versions)
                if not versions.get("IsTruncated"):
                    return
                markers = {"KeyMarker": versions["NextKeyMarker"]}
                if versions.get("NextVersionIdMarker"):
                    markers["VersionIdMarker"] = versions["NextVersionIdMarker"]
                api = work.result()
        else:
            token: dict[str, Any] = {}
            while True:
                page = api.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
                yield dict(page)
                if not page.get("IsTruncated"):
                    return
                token = {"ContinuationToken": page["NextContinuationToken"]}
                api = work.result()

    def _entries(self, page: dict[str, Any]) -> Iterator[tuple[str, str | None, int, datetime]]:
        if self.all_versions:
            for version in page.get("Versions", ()):
                yield version["Key"], version["VersionId"], version["Size"], version["LastModified"]
            for marker in page.get("DeleteMarkers", ()):
                yield marker["Key"], marker["VersionId"], 0, marker["LastModified"]
        else:
            for obj in page.get("Contents", ()):
                yield obj["Key"], None, obj["Size"], obj["LastModified"]

    def _eligible(self, ctx: TargetContext, pages: Iterator[dict[str, Any]]) -> Iterator[Item]:
        """Items older than the cutoff and not excluded, counting `scanned` as it goes."""
        prefix, cut = self.prefix, len(self.prefix)
        excluder = self.excluder if self.excluder else None
        cutoff = ctx.cutoff
        counters = ctx.counters
        for page in pages:
            for key, version_id, size, modified in self._entries(page):
                if not key.startswith(prefix):
                    raise TargetError(
                        f"listing s3://{self.settings.bucket}/{prefix} returned key {key!r} "
                        "outside the prefix; refusing to delete anything more"
                    )
                rel = key[cut:]
                if not rel:
                    continue  # the folder's own marker object: the root is never removed
                if excluder is not None and excluder.excluded(rel.rsplit("/", 1)[-1], rel):
                    continue
                counters.scanned += 1
                if modified < cutoff:
                    yield Item(key, version_id, size)
            if ctx.stop.is_set():
                return

    # -- the run ---------------------------------------------------------------------------

    def run(self, ctx: TargetContext) -> None:
        if not self.prefix and not self.settings.allow_whole_bucket:
            raise TargetError(
                f"bucket {self.settings.bucket!r}: empty prefix refused "
                "(set allow_whole_bucket = true to sweep the whole bucket)"
            )
        pool_size = IN_FLIGHT + 2
        try:
            probe = make_client(self.settings, PROBE_ATTEMPTS, pool_size)
        except BotoCoreError as exc:
            raise TargetError(describe(exc, self.settings, "connect to")) from exc
        work: Future[S3Client] = Future()
        pages = Prefetch(lambda: self._pages(probe, work), PAGES_AHEAD, f"s3-list-{ctx.name}")
        # The first page is on its way (through the probe client): build the work client
        # meanwhile, off the critical path.
        try:
            client = make_client(self.settings, MAX_ATTEMPTS, pool_size)
        except BotoCoreError as exc:
            work.set_exception(exc)
            pages.close()
            raise TargetError(describe(exc, self.settings, "connect to")) from exc
        work.set_result(client)
        slots = threading.BoundedSemaphore(IN_FLIGHT)
        failure: list[BaseException] = []
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix=f"s3-{ctx.name}") as pool:

            def release(future: Future[None]) -> None:
                slots.release()
                if (exc := future.exception()) is not None:
                    failure.append(exc)

            def dispatch(batch: list[Item]) -> bool:
                """Send (or, in a dry run, count) one batch; False when the target must stop."""
                if ctx.stop.is_set() or failure:
                    return False
                granted = ctx.budget.take(len(batch))
                if granted:
                    sent = batch[:granted]
                    ctx.counters.matched += granted
                    if ctx.dry_run:
                        self._predicted(ctx, sent)
                    else:
                        slots.acquire()
                        pool.submit(self._send, ctx, client, sent).add_done_callback(release)
                return granted == len(batch)

            try:
                self._list_and_dispatch(ctx, pages, dispatch)
            except (ClientError, BotoCoreError) as exc:
                raise TargetError(describe(exc, self.settings, "list")) from exc
            finally:
                pages.close()  # stops the listing thread: nothing is fetched after this
            # Leaving the `with` waits for the batches in flight: they finish, even on SIGTERM.
        if failure:
            first = failure[0]
            if isinstance(first, _Fatal):
                raise TargetError(str(first)) from first.__cause__
            raise TargetError(f"unexpected error while deleting: {type(first).__name__}") from first

    def _list_and_dispatch(
        self,
        ctx: TargetContext,
        pages: Prefetch[dict[str, Any]],
        dispatch: Callable[[list[Item]], bool],
    ) -> None:
        batch: list[Item] = []
        for item in self._eligible(ctx, pages):
            batch.append(item)
            if len(batch) == BATCH_SIZE:
                if not dispatch(batch):
                    return
                batch = []
        if batch:
            dispatch(batch)

    def _predicted(self, ctx: TargetContext, batch: list[Item]) -> None:
        ctx.counters.bytes_freed += sum(item.size for item in batch)
        if ctx.debug:
            for item in batch:
                ctx.item_done(**self._fields(item))

    def _fields(self, item: Item) -> dict[str, Any]:
        if self.all_versions:
            return {"key": item.key, "version_id": item.version_id, "size": item.size}
        return {"key": item.key, "size": item.size}

    # -- sending (pool threads) ----------------------------------------------------------

    def _send(self, ctx: TargetContext, client: S3Client, batch: list[Item]) -> None:
        """Delete one batch, retrying keys the store throttled; log and count every outcome."""
        for item in batch:
            # Defence in depth: the listing was checked, but nothing leaves this process
            # for deletion unless it is inside the prefix.
            if not item.key.startswith(self.prefix) or item.key == self.prefix:
                ctx.budget.give_back(len(batch))
                raise _Fatal(
                    f"refusing to delete {item.key!r}: outside s3://{self.settings.bucket}/"
                    f"{self.prefix}"
                )
        pending = batch
        codes: dict[Item, str] = {}
        for attempt in range(KEY_RETRY_ROUNDS + 1):
            if attempt:
                delay = min(KEY_RETRY_MAX_S, KEY_RETRY_BASE_S * 2**attempt)
                time.sleep(delay * (0.5 + random.random() / 2))
            try:
                codes = self._delete(client, pending)
            except ClientError as exc:
                code = error_code(exc)
                if code not in RETRYABLE_CODES:
                    self._settle(ctx, pending, dict.fromkeys(pending, code))
                    raise _Fatal(describe(exc, self.settings, "delete objects in")) from exc
                # Still throttled after botocore's own retries: back off and resend it all.
                codes = dict.fromkeys(pending, code)
            except BotoCoreError as exc:
                self._settle(ctx, pending, dict.fromkeys(pending, type(exc).__name__))
                raise _Fatal(describe(exc, self.settings, "delete objects in")) from exc
            retry = [item for item in pending if codes.get(item) in RETRYABLE_CODES]
            self._settle(ctx, [i for i in pending if codes.get(i) not in RETRYABLE_CODES], codes)
            if not retry:
                return
            pending = retry
        self._settle(ctx, pending, codes)

    def _delete(self, client: S3Client, items: list[Item]) -> dict[Item, str]:
        """One DeleteObjects call; returns the items it reports as failed, with their codes."""
        objects: list[Any] = [
            {"Key": i.key, "VersionId": i.version_id} if i.version_id else {"Key": i.key}
            for i in items
        ]
        answer = client.delete_objects(
            Bucket=self.settings.bucket, Delete={"Objects": objects, "Quiet": True}
        )
        failed: dict[Item, str] = {}
        reported = answer.get("Errors", [])
        if not reported:
            return failed
        by_key: dict[str, list[Item]] = {}
        for item in items:
            by_key.setdefault(item.key, []).append(item)
        for error in reported:
            code = str(error.get("Code") or "unknown")
            version = error.get("VersionId")
            for item in by_key.get(str(error.get("Key")), ()):
                # Match loosely: an error a store reports without (or with an unexpected)
                # VersionId must never be mistaken for a success.
                if not version or item.version_id is None or item.version_id == version:
                    failed[item] = code
        return failed

    def _settle(self, ctx: TargetContext, items: list[Item], failed: dict[Item, str]) -> None:
        """Count and log the final outcome of `items`; hand failed ones back to the budget."""
        done = [item for item in items if item not in failed]
        lost = [item for item in items if item in failed]
        with self._lock:
            ctx.counters.deleted += len(done)
            ctx.counters.bytes_freed += sum(item.size for item in done)
            ctx.counters.failed += len(lost)
        ctx.budget.give_back(len(lost))
        for item in lost:
            ctx.item_failed(error=failed[item], **self._fields(item))
        if ctx.debug:
            for item in done:
                ctx.item_done(**self._fields(item))


def create(settings: S3Settings) -> S3Target:
    return S3Target(settings)
