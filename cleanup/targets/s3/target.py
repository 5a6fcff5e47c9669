"""S3 target: delete objects (or every version) older than the cutoff under one prefix.

A streaming pipeline: listing threads (s3_walk, one stream or several over
sub-prefixes) fill a bounded queue of pages, the calling thread cuts the eligible
items into DeleteObjects batches of at most 1000 keys, and each batch is sent in a
thread of its own (s3_send.Flights), as many at once as the adaptive window allows
(s3_pace, at most `max_in_flight`). Memory holds a few pages per stream and at most
`max_in_flight` batches, whatever the size of the bucket. Throttled keys are sent
again through the same window until deleted; they are given up only after
`throttle_patience` with no deletion, or at the stop (docs/s3.md, "Throttling").

The deletion budget is taken for a whole batch before it is sent and only the
granted part is sent, so batches in flight can never take the target past
`max_deletions`; keys that fail are given back. A dry run past the cap goes on
listing, to count the backlog. A dry run sends nothing; with `versions = "all"` on
a bucket with Object Lock it reads the lock of each eligible version instead
(s3_lock) and predicts the per-key AccessDenied the real run will get.

A stop request ends the listing at once and lets the batches in flight finish, but
waits for their answers STOP_DRAIN_S at most: keys whose DeleteObjects is still
unanswered then are counted failed, their outcome unknown, and the target reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from cleanup.errors import TargetError
from cleanup.globs import Excluder
from cleanup.targets.base import TargetContext
from cleanup.targets.s3.checks import preflight_problems, warn_empty
from cleanup.targets.s3.client import (
    MAX_ATTEMPTS,
    PROBE_ATTEMPTS,
    RETRYABLE_CODES,
    THROTTLE_CODES,
    describe,
    error_code,
    make_client,
    retries_cut_short,
)
from cleanup.targets.s3.lock import LOCKED, LockCheck, lock_check
from cleanup.targets.s3.pace import Pace
from cleanup.targets.s3.send import Flights
from cleanup.targets.s3.settings import S3Settings
from cleanup.targets.s3.walk import Walk

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BATCH_SIZE = 1000  # the DeleteObjects maximum
# How long batches in flight may still take once the run is asked to stop. With the
# listing's close (s3_walk.CLOSE_WAIT_S) this ends the target well inside the
# runner's STOP_GRACE_S, so the target, not the runner, reports what became of each key.
STOP_DRAIN_S = 5.0
ABANDONED = (
    "outcome unknown: the run stopped before the store answered this DeleteObjects "
    "request; the object may or may not be deleted"
)


class Item(NamedTuple):
    key: str
    version_id: str | None  # None: the current object (versions = "current")
    size: int
    marker: bool = False  # a delete marker (versions = "all")


@dataclass(eq=False)
class _Flight:
    """One batch on its way: the items whose outcome is not settled yet."""

    pending: list[Item]
    abandoned: bool = False  # given up after the stop; a late answer no longer counts


class _Fatal(Exception):
    """A batch failed as a whole in a way retrying cannot fix: stop the target."""


class S3SendError(RuntimeError):
    """An unexpected exception in a sending thread, chained to it (its traceback is logged)."""


class S3Target:
    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.all_versions = settings.versions == "all"
        self.excluder = Excluder(settings.exclude)
        self._lock = threading.Lock()  # counters written by the sending threads
        self._found = False  # the listing returned at least one entry under the prefix

    # -- listing ---------------------------------------------------------------------------

    def _eligible(self, ctx: TargetContext, pages: Walk) -> Iterator[Item]:
        """Items older than the cutoff and not excluded, counting `scanned` as it goes;
        notes in `_found` whether anything at all lies under the prefix (excluded or not).
        A key outside the sub-prefix its page was listed for stops the target."""
        cut = len(self.prefix)
        excluder = self.excluder if self.excluder else None
        cutoff = ctx.cutoff
        counters = ctx.counters
        for scope, page in pages:
            for key, version_id, size, modified, marker in page:
                if not key.startswith(scope):
                    raise TargetError(
                        f"listing s3://{self.settings.bucket}/{scope} returned key {key!r} "
                        "outside the prefix; refusing to delete anything more"
                    )
                rel = key[cut:]
                if not rel:
                    continue  # the folder's own marker object: the root is never removed
                self._found = True
                if excluder is not None and excluder.excluded(rel.rsplit("/", 1)[-1], rel):
                    continue
                counters.scanned += 1
                if modified < cutoff:
                    yield Item(key, version_id, size, marker)
            if ctx.stop.is_set():
                return

    # -- the run ---------------------------------------------------------------------------

    def _whole_bucket_refused(self) -> str:
        if self.prefix or self.settings.allow_whole_bucket:
            return ""
        return (
            f"bucket {self.settings.bucket!r}: empty prefix refused "
            "(set allow_whole_bucket = true to sweep the whole bucket)"
        )

    def _client(self, ctx: TargetContext, attempts: int, pace: Pace | None = None) -> S3Client:
        try:
            return make_client(self.settings, attempts, ctx.stop, pace.note if pace else None)
        except BotoCoreError as exc:
            raise TargetError(describe(exc, self.settings, "connect to")) from exc

    def preflight(self, ctx: TargetContext) -> list[str]:
        if refused := self._whole_bucket_refused():
            return [refused]
        return preflight_problems(self._client(ctx, PROBE_ATTEMPTS), self.settings)

    def run(self, ctx: TargetContext) -> None:
        if refused := self._whole_bucket_refused():
            raise TargetError(refused)
        # Two clients: the first listing page goes through one with few retries, so an
        # unusable store fails the target in seconds; everything after, the work client.
        settings = self.settings
        pace = Pace(ctx, settings.max_in_flight, settings.throttle_patience, ctx.progress_interval)
        probe = self._client(ctx, PROBE_ATTEMPTS, pace)
        client = self._client(ctx, MAX_ATTEMPTS, pace)
        streams = settings.list_parallelism
        pages = Walk(settings, probe, client, streams, f"s3-list-{ctx.name}", ctx.stop)
        flights: Flights[_Flight] = Flights(
            lambda: pace.limit, ctx.stop, f"s3-{ctx.name}", pace.starved
        )
        dispatch = self._dispatcher(ctx, client, flights, pace)
        complete = False
        try:
            complete = self._list_and_dispatch(ctx, pages, dispatch)
        except (ClientError, BotoCoreError) as exc:
            if not retries_cut_short(ctx.stop, exc):
                raise TargetError(describe(exc, self.settings, "list")) from exc
        finally:
            pages.close()  # stops the listing thread: nothing is fetched after this
            # The batches in flight finish, also on a stop, but are not waited for longer
            # than STOP_DRAIN_S after it: those still unanswered then are abandoned.
            self._abandon(ctx, flights.drain(STOP_DRAIN_S))
        if flights.errors:
            first = flights.errors[0]
            if isinstance(first, _Fatal):
                raise TargetError(str(first)) from first.__cause__
            raise S3SendError(
                f"a sending thread failed on s3://{self.settings.bucket}/{self.prefix}: "
                f"{type(first).__name__}: {first}"
            ) from first
        if complete and not self._found and not ctx.stop.is_set():
            warn_empty(ctx, client, self.settings)

    def _dispatcher(
        self, ctx: TargetContext, client: S3Client, flights: Flights[_Flight], pace: Pace
    ) -> Callable[[list[Item]], bool]:
        checks: list[LockCheck | None] = []  # read once, at the first batch of a dry run

        def dispatch(batch: list[Item]) -> bool:
            """Send (or, in a dry run, predict) one batch; False when the target must stop."""
            if ctx.stop.is_set() or flights.errors:
                return False
            if ctx.dry_run and self.all_versions and not checks:
                checks.append(lock_check(ctx, client, self.settings, self._start(ctx)))
            checker = checks[0] if checks else None
            wanted = len(batch)
            granted = ctx.budget.take(wanted)
            if granted:
                flight = _Flight(batch[:granted])
                if ctx.dry_run and checker is None:
                    ctx.counters.matched += granted
                    self._settle(ctx, flight, flight.pending, {})
                elif not flights.room():  # the stop came while every slot was busy
                    ctx.budget.give_back(granted)
                    return False
                else:
                    ctx.counters.matched += granted
                    if checker is not None:
                        flights.start(flight, lambda: self._predict(ctx, checker, flight))
                    else:
                        flights.start(flight, lambda: self._send(ctx, client, pace, flight))
            # Past the cap a dry run goes on counting the backlog; a real run stops.
            return granted == wanted or ctx.past_cap(wanted - granted)

        return dispatch

    def _start(self, ctx: TargetContext) -> datetime:
        """The run's one clock reading (the cutoff is that minus max_age)."""
        return ctx.cutoff + timedelta(seconds=self.settings.max_age)

    def _list_and_dispatch(
        self,
        ctx: TargetContext,
        pages: Walk,
        dispatch: Callable[[list[Item]], bool],
    ) -> bool:
        """List and hand out batches; True when the listing was read to its end."""
        batch: list[Item] = []
        for item in self._eligible(ctx, pages):
            batch.append(item)
            if len(batch) == BATCH_SIZE:
                if not dispatch(batch):
                    return False
                batch = []
        return dispatch(batch) if batch else True

    def _fields(self, item: Item) -> dict[str, Any]:
        if self.all_versions:
            return {"key": item.key, "version_id": item.version_id, "size": item.size}
        return {"key": item.key, "size": item.size}

    # -- sending (flight threads) --------------------------------------------------------

    def _send(self, ctx: TargetContext, client: S3Client, pace: Pace, flight: _Flight) -> None:
        """Delete one batch, resending what the store throttled until it goes; log and
        count every outcome."""
        batch = flight.pending
        for item in batch:
            # Defence in depth: the listing was checked, but nothing leaves this process
            # for deletion unless it is inside the prefix.
            if not item.key.startswith(self.prefix) or item.key == self.prefix:
                ctx.budget.give_back(len(batch))
                raise _Fatal(
                    f"refusing to delete {item.key!r}: outside s3://{self.settings.bucket}/"
                    f"{self.prefix}"
                )
        pending = list(batch)
        codes: dict[Item, str] = {}
        idle = 0  # answers in a row that deleted none of `pending`
        # The first request goes at once: the flight was started because the window had
        # room. Resent keys wait for room, as the window may have been cut meanwhile.
        cuts: int | None = pace.acquire(wait=False)
        while True:
            if cuts is None:  # stopping while the window was full
                self._settle(ctx, flight, pending, codes)
                return
            try:
                codes = self._delete(client, pending)
            except ClientError as exc:
                code = error_code(exc)
                retryable = code in RETRYABLE_CODES
                pace.release(cuts, 0, int(code in THROTTLE_CODES), retryable)
                if not retryable:
                    self._settle(ctx, flight, pending, dict.fromkeys(pending, code))
                    raise _Fatal(describe(exc, self.settings, "delete objects in")) from exc
                codes = dict.fromkeys(pending, code)  # the whole request, to be resent
            except BotoCoreError as exc:
                pace.release(cuts, 0, 0, True)
                self._settle(ctx, flight, pending, dict.fromkeys(pending, type(exc).__name__))
                if retries_cut_short(ctx.stop, exc):
                    return
                raise _Fatal(describe(exc, self.settings, "delete objects in")) from exc
            else:
                pace.answered(cuts, len(pending), codes.values())
            retry = [item for item in pending if codes.get(item) in RETRYABLE_CODES]
            done = [item for item in pending if codes.get(item) not in RETRYABLE_CODES]
            self._settle(ctx, flight, done, codes)
            if not retry:
                return
            idle = idle + 1 if len(retry) == len(pending) else 0
            pending = retry
            # Given up only when the whole target made no progress for the patience.
            delay = pace.backoff(idle)
            if delay <= 0 or ctx.wait(delay):
                self._settle(ctx, flight, pending, codes)
                return
            cuts = pace.acquire()

    def _predict(self, ctx: TargetContext, checker: LockCheck, flight: _Flight) -> None:
        """Dry run on a bucket with Object Lock: predict which versions the lock keeps."""
        batch = list(flight.pending)
        held: dict[Item, str] = {}
        reasons: dict[Item, str] = {}
        for item in batch:
            if ctx.stop.is_set():
                break
            if item.marker or item.version_id is None:
                continue  # removing a delete marker is always allowed
            reason = checker.held(ctx, item.key, item.version_id)
            if reason is not None:
                held[item], reasons[item] = LOCKED, reason
        self._settle(ctx, flight, batch, held, reasons)

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

    def _settle(
        self,
        ctx: TargetContext,
        flight: _Flight,
        items: list[Item],
        failed: dict[Item, str],
        reasons: dict[Item, str] | None = None,
    ) -> None:
        """Count and log the final outcome of `items` (in a dry run, the predicted one);
        hand failed ones back to the budget. Nothing more of an abandoned flight counts."""
        done = [item for item in items if item not in failed]
        lost = [item for item in items if item in failed]
        with self._lock:
            if flight.abandoned:
                return  # already counted as failed, outcome unknown: the answer came too late
            settled = set(items)
            flight.pending = [item for item in flight.pending if item not in settled]
            if not ctx.dry_run:
                ctx.counters.deleted += len(done)
            ctx.counters.bytes_freed += sum(item.size for item in done)
            ctx.counters.failed += len(lost)
        ctx.budget.give_back(len(lost))
        for item in lost:
            why = {"reason": reasons[item]} if reasons and item in reasons else {}
            ctx.item_failed(failed[item], predicted=ctx.dry_run, **why, **self._fields(item))
        if ctx.debug:
            for item in done:
                ctx.item_done(**self._fields(item))

    def _abandon(self, ctx: TargetContext, flights: list[_Flight]) -> None:
        """Flights still unanswered after the stop: their keys may or may not be gone.

        They are not `deleted` (nothing confirmed it) but `failed`, each logged with an
        error that says the outcome is unknown; a dry run's unchecked items stay predicted
        deletions. The budget is not given back: the deletions may have happened.
        """
        for flight in flights:
            with self._lock:
                if flight.abandoned:
                    continue
                flight.abandoned = True
                left, flight.pending = flight.pending, []
                if ctx.dry_run:
                    ctx.counters.bytes_freed += sum(item.size for item in left)
                else:
                    ctx.counters.failed += len(left)
            if not ctx.dry_run:
                for item in left:
                    ctx.item_failed(ABANDONED, **self._fields(item))


def create(settings: S3Settings) -> S3Target:
    return S3Target(settings)
