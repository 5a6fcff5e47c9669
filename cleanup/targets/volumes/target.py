"""Volume target: open the root, then sweep it (sweep.py) here or in workers (pool.py)."""

from __future__ import annotations

import errno
import os
import stat

from cleanup.errors import TargetError
from cleanup.logs import display_path
from cleanup.targets.base import TargetContext
from cleanup.targets.volumes.predict import Predictor, root_problems
from cleanup.targets.volumes.settings import VolumeSettings
from cleanup.targets.volumes.sweep import DIR_FLAGS, DirFrame, Entry, Listing, Sweep


class _Peeked:
    """A listing with its first entry already read (to tell an empty root), put back in front."""

    def __init__(self, first: Entry, rest: Listing) -> None:
        self._first: Entry | None = first
        self._rest = rest

    def __iter__(self) -> _Peeked:
        return self

    def __next__(self) -> Entry:
        first, self._first = self._first, None
        return first if first is not None else next(self._rest)

    def close(self) -> None:
        self._rest.close()


def _unreachable(root: str, exc: OSError) -> str:
    """Why the root cannot be opened, and what to fix."""
    path = display_path(root)
    try:
        st = os.lstat(root)
    except (FileNotFoundError, NotADirectoryError):
        return f"volume root {path} does not exist: mount the volume there, or correct path"
    except OSError as lstat_exc:
        exc = lstat_exc  # a directory above it cannot be searched, say
    else:
        if stat.S_ISLNK(st.st_mode):
            return (
                f"volume root {path} is a symbolic link, which the sweep never follows: "
                "set path to the directory it points to"
            )
        if not stat.S_ISDIR(st.st_mode):
            return f"volume root {path} is not a directory: set path to the directory to sweep"
    if exc.errno == errno.EACCES:
        return (
            f"volume root {path} cannot be opened: {exc.strerror} (this process, uid "
            f"{os.geteuid()}, needs read and search permission on it and search permission "
            "on each directory above it)"
        )
    return f"volume root {path} cannot be opened: {exc.strerror}"


class VolumeTarget(Sweep):
    """One [[volumes]] target: its root checked and opened at run time, then swept."""

    def _open_root(self) -> tuple[int, os.stat_result]:
        """The root, opened as the sweep needs it; TargetError says what is wrong and what to fix."""
        root = self.settings.path
        try:
            fd = os.open(root, DIR_FLAGS)
        except OSError as exc:
            raise TargetError(_unreachable(root, exc)) from exc
        if self.settings.require_mount and not os.path.ismount(root):
            os.close(fd)
            raise TargetError(
                f"volume root {display_path(root)} is not a mount point (require_mount = true): "
                "mount the volume there, or set require_mount = false"
            )
        return fd, os.fstat(fd)

    def run(self, ctx: TargetContext) -> None:
        root_fd, root_st = self._open_root()
        listing = None
        try:
            listing = os.scandir(root_fd)
            first = next(listing, None)  # only to tell an empty root: it is put back
        except OSError as exc:
            if listing is not None:
                listing.close()
            os.close(root_fd)
            raise TargetError(
                f"volume root {display_path(self.settings.path)} cannot be listed: {exc.strerror}"
            ) from exc
        if first is None:
            self._warn_empty(ctx)
        # Read once per run, before any worker forks: the identity the prediction is for.
        self.predictor = Predictor() if ctx.dry_run else None
        root = DirFrame(
            root_fd,
            listing if first is None else _Peeked(first, listing),
            "",
            "",
            root_st.st_ino,
            root_st.st_mtime_ns,
            access=self.predictor.directory(root_fd, root_st) if self.predictor else None,
        )
        # A capped run stays in one process: with several, which items the cap lets
        # through would depend on timing, and a dry run could not name them.
        if self.settings.workers > 1 and not ctx.budget.limit:
            # Imported here: a single-process sweep needs none of the pool's machinery.
            from cleanup.targets.volumes.pool import sweep_in_workers

            sweep_in_workers(self, ctx, root, root_st.st_dev)
        else:
            self.sweep_from(ctx, root, root_st.st_dev, ctx.stop.is_set)

    def preflight(self, ctx: TargetContext) -> list[str]:
        """Whether a real run could list and delete under the root: no walk, nothing changed."""
        fd, st = self._open_root()  # a TargetError is the problem, as the run would fail with
        try:
            return root_problems(display_path(self.settings.path), fd, st, Predictor())
        finally:
            os.close(fd)

    def _warn_empty(self, ctx: TargetContext) -> None:
        path = display_path(self.settings.path)
        hint = (
            ""
            if self.settings.require_mount
            else " (set require_mount = true to fail the target when nothing is mounted there)"
        )
        ctx.warning(
            "root_empty",
            f"volume root {path} holds no entries at all: an unmounted volume looks like this"
            + hint,
            path=path,
        )


def create(settings: VolumeSettings) -> VolumeTarget:
    return VolumeTarget(settings)
