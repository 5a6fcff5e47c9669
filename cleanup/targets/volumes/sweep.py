"""The volume sweep: delete files and symlinks older than the cutoff below one open root.

The walk holds a directory file descriptor for each level and does every
operation relative to it (`scandir(fd)`, `stat`/`unlink`/`rmdir` with
`dir_fd`, `open` with O_NOFOLLOW), so a symlink swapped in during the run can
never redirect a deletion outside the root. Only one open directory per level
is kept, so memory does not grow with the size of the tree. The target
(target.py) opens the root and runs this sweep itself, or shares the root's
entries out over worker processes that each run it (pool.py).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cleanup.globs import Excluder
from cleanup.logs import display_path
from cleanup.targets.base import TargetContext
from cleanup.targets.volumes.predict import DirAccess, Predictor
from cleanup.targets.volumes.settings import VolumeSettings

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_S_IFMT = stat.S_IFMT
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch (a float timestamp would round the cutoff)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


class Entry(Protocol):
    """What the sweep reads of a directory entry: `os.DirEntry`, or one a worker was sent."""

    @property
    def name(self) -> str: ...

    def is_dir(self, *, follow_symlinks: bool = True) -> bool: ...

    def is_symlink(self) -> bool: ...

    def is_file(self, *, follow_symlinks: bool = True) -> bool: ...


class Listing(Iterator[Entry], Protocol):
    def close(self) -> None: ...


@dataclass
class DirFrame:
    """One directory being swept: its fd and listing, and what it still holds."""

    fd: int
    listing: Listing
    rel: str  # path relative to the root, with a trailing "/" ("" for the root)
    name: str
    ino: int
    mtime_ns: int  # as read when the sweep entered it, before this run deleted anything
    kept: int = 0  # entries that stay (fresh, excluded, failed, not ours to delete)
    access: DirAccess | None = None  # dry run only: what an unlink in it would meet


class _Capped(Exception):
    """The deletion budget is spent: stop the sweep."""


class Sweep:
    """The sweep of one volume target, run in this process or in each worker."""

    def __init__(self, settings: VolumeSettings) -> None:
        self.settings = settings
        self.excluder = Excluder(settings.exclude)
        self.predictor: Predictor | None = None  # set by a dry run

    def sweep_from(
        self, ctx: TargetContext, root: DirFrame, root_dev: int, stopping: Callable[[], bool]
    ) -> None:
        """Sweep `root` and below; every directory is closed after, `root` included."""
        stack = [root]
        try:
            self._sweep(ctx, stack, root_dev, stopping)
        except _Capped:
            pass
        finally:
            for frame in stack:
                frame.listing.close()
                os.close(frame.fd)

    def _path(self, frame: DirFrame, name: str) -> str:
        return display_path(os.path.join(self.settings.path, frame.rel + name))

    def _fail(self, ctx: TargetContext, frame: DirFrame, name: str, exc: OSError) -> None:
        ctx.counters.failed += 1
        frame.kept += 1
        ctx.item_failed(error=exc.strerror or str(exc), path=self._path(frame, name))

    def _predicted(self, ctx: TargetContext, frame: DirFrame, name: str, error: int) -> None:
        """A dry run's twin of a failed removal: counted as the real run counts it."""
        ctx.budget.give_back(1)
        ctx.counters.matched += 1
        ctx.counters.failed += 1
        frame.kept += 1
        ctx.item_failed(error=os.strerror(error), predicted=True, path=self._path(frame, name))

    def _sweep(
        self,
        ctx: TargetContext,
        stack: list[DirFrame],
        root_dev: int,
        stopping: Callable[[], bool],
    ) -> None:
        """Depth-first over `stack`; each directory's listing resumes where it stopped.

        `stopping` is asked before each entry; the run stops when it says so.
        """
        # Hot loop over every entry: locals instead of attribute look-ups keep it near find's speed.
        counters = ctx.counters
        cutoff_ns = to_ns(ctx.cutoff)
        dry_run = ctx.dry_run
        debug = ctx.debug
        budget = ctx.budget
        capped = budget.limit > 0
        excluder = self.excluder if self.excluder else None
        needs_path = self.excluder.needs_path
        lstat = os.lstat
        unlink = os.unlink
        predict = self.predictor.unlink if self.predictor else None

        while stack:
            frame = stack[-1]
            fd = frame.fd
            descended = False
            for entry in frame.listing:
                if stopping():
                    return
                name = entry.name
                if excluder is not None and excluder.excluded(
                    name, frame.rel + name if needs_path else name
                ):
                    frame.kept += 1
                    continue
                try:
                    # The listing's d_type is the scan; the lstat below is the check made
                    # just before the unlink: an entry whose type changed in between, or that
                    # became fresh, is left alone.
                    if entry.is_dir(follow_symlinks=False):
                        if self._enter_dir(ctx, stack, frame, name, root_dev):
                            descended = True
                            break
                        continue
                    if entry.is_symlink():
                        scanned_type = _S_IFLNK
                    elif entry.is_file(follow_symlinks=False):
                        scanned_type = _S_IFREG
                    else:
                        frame.kept += 1  # sockets, FIFOs, devices are never deleted
                        continue
                    st = lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # gone since the listing: nothing to do
                except OSError as exc:
                    self._fail(ctx, frame, name, exc)
                    continue
                counters.scanned += 1
                if st.st_mtime_ns >= cutoff_ns or _S_IFMT(st.st_mode) != scanned_type:
                    frame.kept += 1
                    continue
                if capped and not budget.take(1):
                    if ctx.past_cap():
                        continue  # a dry run counts the backlog; this one would go, later
                    raise _Capped
                if not dry_run:
                    try:
                        unlink(name, dir_fd=fd)
                    except FileNotFoundError:
                        budget.give_back(1)
                        continue
                    except OSError as exc:
                        budget.give_back(1)
                        counters.matched += 1
                        self._fail(ctx, frame, name, exc)
                        continue
                    counters.deleted += 1
                elif predict is not None and (error := predict(frame.access, fd, name, st)):
                    self._predicted(ctx, frame, name, error)
                    continue
                counters.matched += 1
                counters.bytes_freed += st.st_size
                if debug:
                    ctx.item_done(path=self._path(frame, name), size=st.st_size)
            if descended:
                continue
            stack.pop()
            frame.listing.close()
            os.close(fd)
            if stack:
                self._leave_dir(ctx, frame, stack[-1], cutoff_ns)

    def _enter_dir(
        self,
        ctx: TargetContext,
        stack: list[DirFrame],
        parent: DirFrame,
        name: str,
        root_dev: int,
    ) -> bool:
        """Open a subdirectory and push it on the stack; False when it is not to be entered."""
        try:
            # O_NOFOLLOW: if the directory was swapped for a symlink since the listing,
            # this fails instead of following it out of the root.
            fd = os.open(name, DIR_FLAGS, dir_fd=parent.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                parent.kept += 1  # replaced by a link or file mid-run: leave it
            elif exc.errno != errno.ENOENT:
                self._fail(ctx, parent, name, exc)
            return False
        st = os.fstat(fd)
        if self.settings.one_file_system and st.st_dev != root_dev:
            os.close(fd)
            parent.kept += 1  # another mount: never descend
            return False
        try:
            listing = os.scandir(fd)
        except OSError as exc:
            os.close(fd)
            self._fail(ctx, parent, name, exc)
            return False
        if self.settings.remove_empty_dirs:
            ctx.counters.scanned += 1
        access = self.predictor.directory(fd, st) if self.predictor else None
        stack.append(
            DirFrame(
                fd, listing, parent.rel + name + "/", name, st.st_ino, st.st_mtime_ns, 0, access
            )
        )
        return True

    def _leave_dir(
        self, ctx: TargetContext, frame: DirFrame, parent: DirFrame, cutoff_ns: int
    ) -> None:
        """After a directory's sweep: remove it if it is now empty and was old when entered."""
        if not self.settings.remove_empty_dirs or frame.kept or frame.mtime_ns >= cutoff_ns:
            parent.kept += 1
            return
        if not ctx.budget.take(1):
            if ctx.past_cap():
                return  # counted in a dry run's backlog; it would go, later
            raise _Capped
        predictor = self.predictor
        if predictor and (error := predictor.rmdir(parent.access, frame.access)):
            self._predicted(ctx, parent, frame.name, error)
            return
        if not ctx.dry_run:
            try:
                now = os.lstat(frame.name, dir_fd=parent.fd)
                if now.st_ino != frame.ino or not stat.S_ISDIR(now.st_mode):
                    ctx.budget.give_back(1)
                    parent.kept += 1
                    return
                os.rmdir(frame.name, dir_fd=parent.fd)
            except OSError as exc:
                ctx.budget.give_back(1)
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    parent.kept += 1  # something was written into it meanwhile
                elif exc.errno != errno.ENOENT:
                    ctx.counters.matched += 1
                    self._fail(ctx, parent, frame.name, exc)
                return
            ctx.counters.deleted += 1
        ctx.counters.matched += 1
        if ctx.debug:
            ctx.item_done(path=self._path(parent, frame.name) + "/", size=0)
