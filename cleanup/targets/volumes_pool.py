"""A volume sweep shared out over worker processes (`workers` > 1).

Why processes: on local storage the sweep is CPU-bound, and what separates it
from `find` is Python's cost per entry, not the kernel's. Threads share one
interpreter lock and measured slower; forked workers each run the ordinary
sweep (`VolumeTarget.sweep_from`) on a core of their own, so every safety rule
holds exactly as with one worker.

How the work is split: this process lists the root and hands its entries out
in small batches over a SOCK_SEQPACKET socket, where each message goes to
exactly one worker, whichever asks first. A worker sweeps each root entry it
is handed, a subdirectory with its whole subtree, relative to the root's file
descriptor inherited across fork. No two workers share a directory below the
root, so `remove_empty_dirs` decides as it does with one worker. A tree whose
data sits under a single subdirectory of the root gains nothing.

What comes back: workers never write to stdout. Item events and counter
snapshots come back as messages on a second socket; this process logs them and
adds them up, so lines never interleave and progress events see live counters.
Which items a `max_deletions` cap lets through would depend on how the
workers' timing falls, so a dry run could not name them; with a cap the target
sweeps in one process instead (see `VolumeTarget.run`).

Stopping: a signal sets `ctx.stop` here; the workers are sent SIGTERM, finish
the entry in hand, report and exit.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import socket
import threading
import warnings
from collections.abc import Generator, Iterator
from contextlib import suppress
from dataclasses import astuple, dataclass, replace
from typing import Any

from cleanup.errors import TargetError
from cleanup.targets.base import COUNTERS, TargetContext
from cleanup.targets.volumes import DirFrame, Entry, VolumeTarget

_DIR, _LINK, _FILE, _OTHER = b"dlfo"
_BATCH_ENTRIES = 256
_BATCH_BYTES = 32 * 1024
_MESSAGE_BYTES = 128 * 1024  # the largest message either way; a batch stays far below it
_REPORT_EVERY = 256  # entries between a worker's counter snapshots
_POLL_S = 0.1  # how often the coordinator looks at the stop flag while it waits
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_DRAIN_AT_ONCE = 512  # messages handled before the coordinator looks at its other duties


class _Sent:
    """A root entry as a worker receives it: its name and the type the listing gave."""

    __slots__ = ("_type", "name")

    def __init__(self, name: str, entry_type: int) -> None:
        self.name = name
        self._type = entry_type

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._type == _DIR

    def is_symlink(self) -> bool:
        return self._type == _LINK

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._type == _FILE


def _received(jobs: socket.socket) -> Generator[_Sent, None, None]:
    """The root entries handed to this worker, until the coordinator ends the feed."""
    while message := jobs.recv(_MESSAGE_BYTES):
        for item in message.split(b"\0"):
            yield _Sent(os.fsdecode(item[1:]), item[0])


def _batches(listing: Iterator[Entry]) -> Generator[bytes, None, None]:
    """The root's listing as messages: entries of `type byte + name`, NUL-separated."""
    batch: list[bytes] = []
    size = 0
    for entry in listing:
        if entry.is_dir(follow_symlinks=False):
            entry_type = _DIR
        elif entry.is_symlink():
            entry_type = _LINK
        elif entry.is_file(follow_symlinks=False):
            entry_type = _FILE
        else:
            entry_type = _OTHER
        item = bytes((entry_type,)) + os.fsencode(entry.name)
        batch.append(item)
        size += len(item) + 1
        # A subdirectory may hold a large subtree: send it at once rather than
        # behind a queue of files, so the workers' shares even out.
        if entry_type == _DIR or len(batch) >= _BATCH_ENTRIES or size >= _BATCH_BYTES:
            yield b"\0".join(batch)
            batch, size = [], 0
    if batch:
        yield b"\0".join(batch)


def _send(channel: socket.socket, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    if len(payload) > _MESSAGE_BYTES and message[0] == "event":
        # Only a path tens of kilobytes long gets here; the line says it was shortened.
        fields = dict(message[4], path=str(message[4].get("path", ""))[:4096] + "...(truncated)")
        payload = pickle.dumps((*message[:4], fields), pickle.HIGHEST_PROTOCOL)
    channel.sendall(payload)


@dataclass
class _WorkerContext(TargetContext):
    """A worker's view of the target: its own counters, events sent to the coordinator."""

    channel: socket.socket | None = None

    def event(self, level: int, event: str, message: str, **fields: Any) -> None:
        assert self.channel is not None
        _send(self.channel, ("event", level, event, message, fields))


def _work(
    target: VolumeTarget,
    ctx: TargetContext,
    index: int,
    root: DirFrame,
    root_dev: int,
    jobs: socket.socket,
    results: socket.socket,
) -> int:
    """A worker's whole life after fork: sweep what it is handed, report, return its exit code."""
    # A fresh flag: the inherited one's lock could have been held by another thread at fork.
    stop = threading.Event()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda _sig, _frame: stop.set())
    # Blocked since before the fork (see _fork): a stop signal that came in between is
    # delivered now, to the handler above, instead of killing a worker mid-sweep.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if ctx.stop.is_set():
        stop.set()
    worker = _WorkerContext(
        name=ctx.name,
        kind=ctx.kind,
        cutoff=ctx.cutoff,
        dry_run=ctx.dry_run,
        budget=ctx.budget,
        stop=stop,
        logger=ctx.logger,
        channel=results,
    )
    counters = worker.counters

    def report() -> None:
        _send(results, ("counters", index, astuple(counters)))

    ticks = 0

    def stopping() -> bool:
        nonlocal ticks
        ticks += 1
        if ticks == _REPORT_EVERY:
            ticks = 0
            report()
        return stop.is_set()

    try:
        # The root's own frame (its fd inherited across fork, and in a dry run what an
        # unlink in it would meet), listing only the entries this worker is handed.
        target.sweep_from(worker, replace(root, listing=_received(jobs)), root_dev, stopping)
    except Exception as exc:  # reported to the coordinator, which fails the target with it
        report()
        _send(results, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    report()
    return 0


def _fork() -> int:
    # The child takes no lock another thread may hold at fork: it never logs (its
    # events go over a socket) and uses a stop flag of its own. So forking beside
    # the progress thread is safe, and Python 3.12's warning about it does not apply.
    # Stop signals stay blocked until the child has its own handlers (see _work).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return pid


class _Coordinator:
    """Feeds the workers, relays their events and sums their counters until all are done."""

    def __init__(self, ctx: TargetContext, pids: list[int], jobs: socket.socket) -> None:
        self.ctx = ctx
        self.pids = pids
        self.jobs = jobs
        self.latest: dict[int, tuple[int, ...]] = {}  # each worker's last counter snapshot
        self.errors: list[str] = []
        self.signalled = False
        self.done = False  # every worker has closed its end of the results socket
        self.buffer = bytearray(_MESSAGE_BYTES)

    def run(self, results: socket.socket, batches: Generator[bytes, None, None]) -> None:
        """Until every worker has closed its end of `results`."""
        selector = selectors.DefaultSelector()
        self.jobs.setblocking(False)
        results.setblocking(False)
        selector.register(results, selectors.EVENT_READ)
        pending = next(batches, None)
        feeding = pending is not None
        if feeding:
            selector.register(self.jobs, selectors.EVENT_WRITE)
        else:
            self.jobs.shutdown(socket.SHUT_WR)

        def end_feed() -> None:
            nonlocal feeding
            feeding = False
            selector.unregister(self.jobs)
            self.jobs.shutdown(socket.SHUT_WR)
            batches.close()

        try:
            while True:
                if self.ctx.stop.is_set() and not self.signalled:
                    self.signal_workers()
                    if feeding:
                        end_feed()
                for key, _mask in selector.select(timeout=_POLL_S):
                    if key.fileobj is results:
                        if not self._drain(results):
                            self.done = True
                            return
                        continue
                    assert pending is not None
                    try:
                        self.jobs.send(pending)
                    except BlockingIOError:
                        continue
                    except OSError:  # every worker is gone; their results say why
                        end_feed()
                        continue
                    pending = next(batches, None)
                    if pending is None:
                        end_feed()
        finally:
            selector.close()
            batches.close()

    def _drain(self, results: socket.socket) -> bool:
        """Handle the messages waiting; False once all workers have closed their end.

        At most `_DRAIN_AT_ONCE` at a time: workers logging every item can keep the socket
        full, and the stop flag and the feed must still get their turn.
        """
        view = memoryview(self.buffer)
        for _ in range(_DRAIN_AT_ONCE):
            try:
                size, _flags, _ancillary, _address = results.recvmsg_into([view])
            except BlockingIOError:
                return True
            if size == 0:
                return False
            # The sender is our own forked worker, over a socketpair no other process holds.
            self._handle(pickle.loads(view[:size]))  # noqa: S301
        return True

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "event":
            _tag, level, event, text, fields = message
            self.ctx.event(level, event, text, **fields)
        elif kind == "counters":
            self.latest[message[1]] = message[2]
            for position, name in enumerate(COUNTERS):
                setattr(self.ctx.counters, name, sum(c[position] for c in self.latest.values()))
        else:
            self.errors.append(message[1])

    def signal_workers(self) -> None:
        self.signalled = True
        for pid in self.pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def sweep_in_workers(
    target: VolumeTarget, ctx: TargetContext, root: DirFrame, root_dev: int
) -> None:
    """Sweep from the open `root` with `target.settings.workers` processes; closes `root` after."""
    jobs, jobs_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    results, results_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pids: list[int] = []
    coordinator = _Coordinator(ctx, pids, jobs)
    try:
        for index in range(target.settings.workers):
            pid = _fork()
            if pid == 0:  # the worker: it must never return into the caller's code
                code = 1
                try:
                    jobs.close()
                    results.close()
                    code = _work(target, ctx, index, root, root_dev, jobs_end, results_end)
                finally:
                    os._exit(code)
            pids.append(pid)
        jobs_end.close()
        results_end.close()
        coordinator.run(results, _batches(root.listing))
    finally:
        root.listing.close()
        os.close(root.fd)
        if not coordinator.done:
            coordinator.signal_workers()  # we are failing: workers must not go on alone
        for sock in (jobs, jobs_end, results, results_end):
            sock.close()  # a worker still sending gets EPIPE and ends
        abnormal = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])]
    if coordinator.errors:
        raise TargetError(f"a volume worker failed: {coordinator.errors[0]}")
    if abnormal:
        raise TargetError(f"{len(abnormal)} volume worker process(es) ended abnormally")
