"""A volume sweep shared out over worker processes (`workers` > 1).

Why processes: on local storage the sweep is CPU-bound, and what separates it
from `find` is Python's cost per entry, not the kernel's. Threads share one
interpreter lock and measured slower; forked workers each run the ordinary
sweep (`Sweep.sweep_from`) on a core of their own, so every safety rule
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
sweeps in one process instead (see `VolumeTarget.run` in target.py).

Stopping: a signal sets `ctx.stop` here; the workers are sent SIGTERM, finish
the entry in hand, report and exit. One that has not exited a few seconds later
(stopped, or blocked on a store that does not answer) is killed, and every wait
for a worker is bounded, so the stop is too.
"""

from __future__ import annotations

import os
import pickle
import select
import selectors
import signal
import socket
import threading
import time
import warnings
from collections.abc import Generator, Iterator
from contextlib import suppress
from dataclasses import astuple, dataclass, replace
from typing import Any

from cleanup.errors import TargetError
from cleanup.targets.base import COUNTERS, Budget, TargetContext
from cleanup.targets.volumes.sweep import DirFrame, Entry, Sweep

_DIR, _LINK, _FILE, _OTHER = b"dlfo"
_BATCH_ENTRIES = 256
_BATCH_BYTES = 32 * 1024
_MESSAGE_BYTES = 128 * 1024  # the largest message either way; a batch stays far below it
_REPORT_EVERY = 256  # entries between a worker's counter snapshots
_POLL_S = 0.1  # how often the coordinator looks at the stop flag while it waits
# After the stop is forwarded, how long a worker may take to finish its entry and exit
# before it is killed, and how long the wait for a killed one may take: together well
# inside the runner's grace, so `run_finished` comes within 10 s of SIGTERM.
_WORKER_STOP_S = 3.0
_REAP_S = 1.5
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
    target: Sweep,
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
        # Workers only sweep uncapped runs (a cap keeps the sweep in one process): a budget
        # of their own that grants everything, not the coordinator's, copied at fork.
        budget=Budget(0),
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
        self.signalled_at: float | None = None  # when the stop was forwarded to the workers
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
                if self.ctx.stop.is_set() and self.signalled_at is None:
                    self.signal_workers()
                    if feeding:
                        end_feed()
                if self.signalled_at is not None and self._past(_WORKER_STOP_S):
                    return  # a worker is stuck: sweep_in_workers kills what still runs
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
        """Forward the stop: each worker finishes the entry in hand, reports and exits."""
        if self.signalled_at is not None:
            return
        self.signalled_at = time.monotonic()
        for pid in self.pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _past(self, seconds: float) -> bool:
        return self.signalled_at is not None and time.monotonic() >= self.signalled_at + seconds

    def wind_down(self) -> tuple[list[int], list[int]]:
        """Wait for every worker to end, bounded: one still running `_WORKER_STOP_S` after
        the stop was forwarded (or after the sweep ended) is killed, and the wait for the
        killed ones is bounded too. Returns (workers that ended abnormally, workers killed)."""
        start = self.signalled_at if self.signalled_at is not None else time.monotonic()
        codes = _reap(self.pids, start + _WORKER_STOP_S)
        killed = [pid for pid in self.pids if pid not in codes]
        for pid in killed:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # also ends a stopped (SIGSTOP) process
        codes |= _reap(killed, time.monotonic() + _REAP_S)
        for pid in killed:
            self.ctx.warning(
                "worker_killed",
                f"volume worker process {pid} did not end within {_WORKER_STOP_S:.0f} s "
                "of the stop request: killed"
                + ("" if pid in codes else " (and not yet gone: blocked in the kernel?)"),
                pid=pid,
            )
        abnormal = [pid for pid, code in codes.items() if code and pid not in killed]
        return abnormal, killed


def _reap(pids: list[int], deadline: float) -> dict[int, int]:
    """Exit codes of those of `pids` that end by `deadline` (monotonic); never waits longer."""
    codes: dict[int, int] = {}
    pidfds: dict[int, int] = {}
    for pid in pids:
        with suppress(OSError):  # no pidfds (a kernel before 5.3): polled below instead
            pidfds[pid] = os.pidfd_open(pid)
    try:
        while True:
            for pid in pids:
                if pid in codes:
                    continue
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped already
                    done, status = pid, 0
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
            left = [pidfds.get(pid, -1) for pid in pids if pid not in codes]
            remaining = deadline - time.monotonic()
            if not left or remaining <= 0:
                return codes
            if -1 in left:
                select.select([], [], [], min(remaining, _POLL_S))
            else:
                select.select(left, [], [], remaining)  # a pidfd is readable once its process ends
    finally:
        for fd in pidfds.values():
            os.close(fd)


def sweep_in_workers(target: Sweep, ctx: TargetContext, root: DirFrame, root_dev: int) -> None:
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
        abnormal, killed = coordinator.wind_down()
    if coordinator.errors:
        raise TargetError(f"a volume worker failed: {coordinator.errors[0]}")
    if abnormal or (killed and not ctx.stop.is_set()):
        count = len(abnormal) + (0 if ctx.stop.is_set() else len(killed))
        raise TargetError(f"{count} volume worker process(es) ended abnormally")
