"""A passthrough FUSE filesystem that waits a fixed time in every operation.

Network storage (NFS, EFS, SMB) on one machine: each lookup, listing and
unlink costs a round trip, so a sweep waits on the "server" rather than
burning CPU. Serves many requests at once, as a real server would.

    python bench/slowfs.py BACKING_DIR MOUNTPOINT LATENCY_MS   (stays in the foreground)

Needs libfuse 3 (`fuse3`) and `mfusepy`; volumes_bench.py installs both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import mfusepy as fuse  # type: ignore[import-untyped, import-not-found, unused-ignore]

_STAT_KEYS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino")


class SlowPassthrough(fuse.Operations):  # type: ignore[misc]
    use_ns = True  # times in integer nanoseconds, as lstat gives them

    def __init__(self, backing: str, latency_s: float) -> None:
        self.backing = backing
        self.latency_s = latency_s

    def _real(self, path: str) -> str:
        time.sleep(self.latency_s)  # the round trip to the "server"
        return self.backing + path

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno) from exc
        found: dict[str, Any] = {key: getattr(st, key) for key in _STAT_KEYS}
        for key in ("st_atime", "st_mtime", "st_ctime"):
            found[key] = getattr(st, key + "_ns")
        return found

    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def unlink(self, path: str) -> None:
        try:
            os.unlink(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno) from exc

    def rmdir(self, path: str) -> None:
        try:
            os.rmdir(self._real(path))
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno) from exc


def main() -> None:
    backing, mountpoint, latency_ms = sys.argv[1:4]
    fuse.FUSE(
        SlowPassthrough(os.path.abspath(backing), float(latency_ms) / 1000),
        mountpoint,
        foreground=True,
        nothreads=False,
    )


if __name__ == "__main__":
    main()
