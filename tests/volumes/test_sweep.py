"""The volume target on real directory trees (docs/volumes.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import cleanup.targets.volumes.sweep as volumes
from tests.volumes.conftest import DAY, NOW, age, listing, make, sweep
from tests.volumes.unprivileged import AS_NOBODY, sandbox


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def test_sweep_old_files_deleted_fresh_kept(tmp_path: Path, root: Path) -> None:
    """Files strictly older than the cutoff go; younger files and the root stay."""
    make(root, "old.log", 8)
    make(root, "sub/deeper/old.bin", 30, "12345")
    make(root, "fresh.log", 1)
    make(root, "sub/fresh", 6.9)
    result = sweep(tmp_path, root)
    assert result.exit_code == 0
    assert listing(root) == {"fresh.log", "sub/", "sub/deeper/", "sub/fresh"}
    target = result.target("v")
    assert (target["status"], target["scanned"], target["matched"], target["deleted"]) == (
        "ok",
        4,
        2,
        2,
    )
    assert target["bytes_freed"] == 1 + 5


def test_sweep_file_exactly_at_cutoff_is_kept(tmp_path: Path, root: Path) -> None:
    """Eligible means strictly older than start - max_age: a file at the cutoff stays."""
    at_cutoff = make(root, "at", 7)
    just_older = make(root, "older", 7)
    cutoff = int(NOW.timestamp()) - 7 * DAY
    os.utime(at_cutoff, ns=(cutoff * 10**9, cutoff * 10**9))
    os.utime(just_older, ns=(cutoff * 10**9 - 1, cutoff * 10**9 - 1))
    sweep(tmp_path, root)
    assert listing(root) == {"at"}


def test_sweep_symlink_to_outside_dir_removed_as_link_target_untouched(
    tmp_path: Path, root: Path
) -> None:
    """An old link to a directory outside the root is unlinked; nothing behind it is touched."""
    outside = tmp_path / "outside"
    make(outside, "precious", 100)
    make(outside, "deep/precious", 100)
    (root / "link").symlink_to(outside)
    age(root / "link", 30)
    (root / "fresh-link").symlink_to(outside)
    result = sweep(tmp_path, root)
    assert listing(outside) == {"precious", "deep/", "deep/precious"}
    assert listing(root) == {"fresh-link"}
    assert result.target("v")["deleted"] == 1


def test_sweep_dangling_and_looping_symlinks_handled(tmp_path: Path, root: Path) -> None:
    """Dangling links and link loops are links like any other: old ones go, nothing loops."""
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    (root / "dangling").symlink_to("/nonexistent/target")
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    for name in ("a", "b", "dangling", "sub/up"):
        age(root / name, 30)
    result = sweep(tmp_path, root)
    assert result.exit_code == 0
    assert listing(root) == {"sub/"}
    assert result.target("v")["deleted"] == 4


def test_sweep_fifo_and_socket_are_left(tmp_path: Path, root: Path) -> None:
    """Only regular files and symlinks are deleted: FIFOs and sockets stay, uncounted."""
    os.mkfifo(root / "fifo")
    age(root / "fifo", 30)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        age(root / "sock", 30)
        result = sweep(tmp_path, root)
    finally:
        sock.close()
    assert listing(root) == {"fifo", "sock"}
    assert result.target("v")["scanned"] == 0


def test_sweep_odd_names_deleted_and_logged_as_valid_json(tmp_path: Path, root: Path) -> None:
    """Names with newlines and non-UTF-8 bytes are deleted and logged as valid UTF-8 JSON."""
    make(root, "new\nline", 30)
    raw = os.fsencode(root) + b"/bad-\xff-byte"
    with open(raw, "wb") as handle:
        handle.write(b"x")
    age(raw, 30)
    result = sweep(tmp_path, root, "--log-level", "DEBUG")
    assert os.listdir(os.fsencode(root)) == []
    paths = sorted(line["path"] for line in result.events("item_deleted"))
    assert paths == sorted([f"{root}/new\nline", f"{root}/bad-\\xff-byte"])
    result.stdout.encode("utf-8")  # no lone surrogates leaked into the output


def test_sweep_excludes_by_name_and_by_relative_path(tmp_path: Path, root: Path) -> None:
    """Name globs match the entry's name anywhere; globs with / match the whole relative path."""
    make(root, "a.lock", 30)
    make(root, "sub/b.lock", 30)
    make(root, ".keep", 30)
    make(root, "pinned/x", 30)
    make(root, "pinned/deep/y", 30)
    make(root, "other/pinned/z", 30)
    result = sweep(tmp_path, root, exclude=["*.lock", ".keep", "pinned/*"])
    assert listing(root) == {
        "a.lock",
        "sub/",
        "sub/b.lock",
        ".keep",
        "pinned/",
        "pinned/x",
        "pinned/deep/",
        "pinned/deep/y",
        "other/",
        "other/pinned/",
    }
    assert result.target("v")["scanned"] == 1


def test_sweep_excluded_directory_is_not_entered(tmp_path: Path, root: Path) -> None:
    """An excluded directory is skipped whole: its old contents stay and are not scanned."""
    make(root, "cache/old", 30)
    make(root, "cache/deeper/old", 30)
    make(root, "work/old", 30)
    result = sweep(tmp_path, root, exclude=["cache"])
    assert listing(root) == {"cache/", "cache/old", "cache/deeper/", "cache/deeper/old", "work/"}
    assert result.target("v")["scanned"] == 1


def test_sweep_empty_dirs_removed_when_old_and_emptied(tmp_path: Path, root: Path) -> None:
    """Directories emptied by this run go in the same run when they were old on entry."""
    make(root, "a/b/c/old", 30)
    make(root, "keep/fresh", 1)
    (root / "old-empty").mkdir()
    (root / "new-empty").mkdir()
    for rel, days in (("a/b/c", 30), ("a/b", 30), ("a", 30), ("keep", 30), ("old-empty", 30)):
        age(root / rel, days)
    result = sweep(tmp_path, root, remove_empty_dirs=True)
    assert listing(root) == {"keep/", "keep/fresh", "new-empty/"}
    target = result.target("v")
    assert target["deleted"] == 1 + 4  # the file, a/b/c, a/b, a, old-empty
    assert target["scanned"] == 2 + 6  # two files, six directories


def test_sweep_empty_dirs_off_by_default(tmp_path: Path, root: Path) -> None:
    """Without remove_empty_dirs, directories are never removed."""
    make(root, "a/old", 30)
    age(root / "a", 30)
    sweep(tmp_path, root)
    assert listing(root) == {"a/"}


def test_sweep_dir_with_fresh_mtime_stays_even_when_emptied(tmp_path: Path, root: Path) -> None:
    """A directory a worker just created stays, even though its only file was old."""
    make(root, "job-123/input", 30)
    sweep(tmp_path, root, remove_empty_dirs=True)
    assert listing(root) == {"job-123/"}


def test_sweep_root_never_removed(tmp_path: Path, root: Path) -> None:
    """The root stays even when old and emptied."""
    make(root, "old", 30)
    age(root, 30)
    sweep(tmp_path, root, remove_empty_dirs=True)
    assert root.is_dir()


def test_sweep_dry_run_deletes_nothing_and_matches_real_run(tmp_path: Path, root: Path) -> None:
    """A dry run changes nothing and predicts exactly what the real run then deletes."""
    for i in range(30):
        make(root, f"d{i % 4}/e{i % 3}/f{i}", 3 + i)
    (root / "empty-old").mkdir()
    for rel in ("d0", "d1/e1", "empty-old"):
        age(root / rel, 30)
    (root / "link").symlink_to("d0")
    age(root / "link", 40)
    before = listing(root)
    dry = sweep(tmp_path, root, "--dry-run", "--log-level", "DEBUG", remove_empty_dirs=True)
    assert listing(root) == before
    would = {line["path"] for line in dry.events("item_would_delete")}
    real = sweep(tmp_path, root, "--log-level", "DEBUG", remove_empty_dirs=True)
    done = {line["path"] for line in real.events("item_deleted")}
    assert would == done and len(done) > 20
    dry_t, real_t = dry.target("v"), real.target("v")
    assert dry_t["deleted"] == 0 and dry_t["dry_run"] is True
    assert dry_t["matched"] == real_t["deleted"] == real_t["matched"]
    assert dry_t["bytes_freed"] == real_t["bytes_freed"]
    assert dry.summary["dry_run"] is True and dry.exit_code == 0


def test_sweep_cap_deletes_exactly_max_and_exits_3(tmp_path: Path, root: Path) -> None:
    """With max_deletions reached the target stops, is `capped`, and the run exits 3."""
    for i in range(10):
        make(root, f"f{i}", 30)
    result = sweep(tmp_path, root, "--max-deletions", "4")
    assert len(listing(root)) == 6
    assert result.exit_code == 3
    target = result.target("v")
    assert (target["status"], target["deleted"]) == ("capped", 4)
    assert result.summary["status"] == "failed"


def test_sweep_cap_counts_removed_directories(tmp_path: Path, root: Path) -> None:
    """Removed directories take from the same cap as files."""
    for i in range(3):
        make(root, f"d{i}/f", 30)
        age(root / f"d{i}", 30)
    result = sweep(tmp_path, root, "--max-deletions", "3", remove_empty_dirs=True)
    assert result.target("v")["deleted"] == 3
    assert len([p for p in listing(root) if not p.endswith("/")]) == 1


def test_sweep_cap_in_dry_run_predicts_the_same_items(tmp_path: Path, root: Path) -> None:
    """A capped dry run names exactly the items a capped real run deletes, and goes on
    scanning to report as `backlog` every eligible item."""
    for i in range(10):
        make(root, f"d{i % 3}/f{i}", 30)
    make(root, "d2/fresh", 1)
    dry = sweep(tmp_path, root, "--dry-run", "--max-deletions", "5", "--log-level", "DEBUG")
    real = sweep(tmp_path, root, "--max-deletions", "5", "--log-level", "DEBUG")
    dry_t, real_t = dry.target("v"), real.target("v")
    assert dry_t["status"] == real_t["status"] == "capped"
    would = [line["path"] for line in dry.events("item_would_delete")]
    assert would == [line["path"] for line in real.events("item_deleted")]
    assert len(would) == 5 == dry_t["matched"] == real_t["deleted"]
    assert (dry_t["backlog"], dry_t["scanned"]) == (10, 11)
    assert "backlog" not in real_t and dry.exit_code == real.exit_code == 3


def test_sweep_cap_in_dry_run_backlog_counts_directories_it_would_empty(
    tmp_path: Path, root: Path
) -> None:
    """With remove_empty_dirs, the backlog also counts the directories an uncapped run removes."""
    for i in range(4):
        make(root, f"d{i}/f", 30)
        age(root / f"d{i}", 30)
    dry = sweep(tmp_path, root, "--dry-run", "--max-deletions", "1", remove_empty_dirs=True)
    target = dry.target("v")
    assert (target["matched"], target["backlog"]) == (1, 8)
    uncapped = sweep(tmp_path, root, "--dry-run", remove_empty_dirs=True)
    assert uncapped.target("v")["matched"] == 8 and "backlog" not in uncapped.target("v")


def test_sweep_undeletable_file_counted_and_sweep_goes_on(tmp_path: Path, root: Path) -> None:
    """An entry that cannot be removed is logged and counted; the others still go; status partial."""
    stuck = make(root, "a/stuck", 30)
    make(root, "b/old", 30)
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        result = sweep(tmp_path, root)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert listing(root) == {"a/", "a/stuck", "b/"}
    target = result.target("v")
    assert (target["status"], target["failed"], target["deleted"]) == ("partial", 1, 1)
    failure = result.one("item_failed")
    assert failure["path"] == str(stuck) and failure["level"] == "WARNING" and failure["error"]
    assert result.exit_code == 1


def test_sweep_file_refreshed_before_unlink_is_left(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that became fresh between the scan and the unlink is re-checked and kept."""
    make(root, "busy", 30)
    make(root, "idle", 30)
    real_lstat = os.lstat

    def lstat_after_touch(name: str, *, dir_fd: int | None = None) -> os.stat_result:
        if name == "busy":
            os.utime(name, dir_fd=dir_fd, follow_symlinks=False)  # a worker writes to it now
        return real_lstat(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "lstat", lstat_after_touch)
    result = sweep(tmp_path, root)
    assert listing(root) == {"busy"}
    assert result.target("v")["deleted"] == 1


def test_sweep_file_swapped_for_symlink_before_unlink_is_left(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file replaced by a link after the scan changed type, so it is left alone."""
    make(root, "f", 30)
    outside = make(tmp_path, "outside/precious", 30)
    real_lstat = os.lstat

    def swap_then_lstat(name: str, *, dir_fd: int | None = None) -> os.stat_result:
        os.unlink(name, dir_fd=dir_fd)
        os.symlink(outside, name, dir_fd=dir_fd)
        os.utime(name, (0, 0), dir_fd=dir_fd, follow_symlinks=False)
        return real_lstat(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "lstat", swap_then_lstat)
    sweep(tmp_path, root)
    assert (root / "f").is_symlink() and outside.exists()


def test_sweep_directory_swapped_for_symlink_is_not_followed(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory replaced by a symlink to outside after the listing is never descended into."""
    make(root, "dir/old", 30)
    outside = tmp_path / "outside"
    make(outside, "old", 30)
    real_enter = volumes.Sweep._enter_dir

    def swap_then_enter(
        self: volumes.Sweep,
        ctx: object,
        stack: object,
        parent: volumes.DirFrame,
        name: str,
        *args: object,
    ) -> None:
        if name == "dir":
            os.rename(root / "dir", tmp_path / "moved-away")
            os.symlink(outside, root / "dir")
        real_enter(self, ctx, stack, parent, name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(volumes.Sweep, "_enter_dir", swap_then_enter)
    result = sweep(tmp_path, root)
    assert listing(outside) == {"old"}
    assert (root / "dir").is_symlink()
    assert result.exit_code == 0


def test_sweep_racing_symlink_swaps_never_delete_outside(tmp_path: Path, root: Path) -> None:
    """A thread swapping directories for outside links during many runs never reaches outside."""
    import threading

    outside = tmp_path / "outside"
    for i in range(50):
        make(outside, f"o{i}", 30)
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            for i in range(5):
                d = root / f"d{i}"
                try:
                    os.rename(d, tmp_path / f"hold{i}")
                    os.symlink(outside, d)
                    os.unlink(d)
                    os.rename(tmp_path / f"hold{i}", d)
                except OSError:
                    pass

    for i in range(5):
        for j in range(200):
            make(root, f"d{i}/f{j}", 30)
    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        for _ in range(3):
            sweep(tmp_path, root)
    finally:
        stop.set()
        thread.join()
    assert len(listing(outside)) == 50


def test_sweep_other_filesystem_not_entered(tmp_path: Path, root: Path) -> None:
    """With one_file_system (the default) a mount below the root is never descended into."""
    mnt = root / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        make(mnt, "old", 30)
        make(root, "old", 30)
        sweep(tmp_path, root)
        assert listing(mnt) == {"old"}
        sweep(tmp_path, root, one_file_system=False)
        assert listing(mnt) == set()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert listing(root) == {"mnt/"}


def test_sweep_require_mount_fails_target_when_not_a_mount(tmp_path: Path, root: Path) -> None:
    """require_mount = true fails the target (exit 1, nothing deleted) unless the root is a mount."""
    make(root, "old", 30)
    result = sweep(tmp_path, root, require_mount=True)
    assert listing(root) == {"old"}
    target = result.target("v")
    assert target["status"] == "failed" and "mount point" in target["error"]
    assert target["level"] == "ERROR" and result.exit_code == 1


def test_sweep_require_mount_on_a_mount_sweeps(tmp_path: Path, root: Path) -> None:
    """A root that is a mount point passes require_mount and is swept."""
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root)], capture_output=True).returncode:
        pytest.skip("cannot mount tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        make(root, "old", 30)
        result = sweep(tmp_path, root, require_mount=True)
        assert result.target("v")["status"] == "ok" and listing(root) == set()
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_sweep_unreadable_subdir_counted_as_failed() -> None:
    """Run as an unprivileged user, a directory it cannot enter is a per-entry failure."""
    with sandbox() as box:
        root = box.base / "root"
        stamp = time.time() - 30 * DAY  # the child runs on the real clock
        for rel in ("locked/old", "open/old"):
            os.utime(make(root, rel, 30), (stamp, stamp))
        os.chmod(root / "locked", 0o700)
        for path in (root, root / "open"):
            os.chmod(path, 0o777)
        cfg = box.base / "cleanup.toml"
        cfg.write_text(f'[[volumes]]\nname = "v"\npath = "{root}"\nmax_age = "1d"\n')
        run = box.run(AS_NOBODY, "--config", str(cfg))
        target = run.target("v")
        assert (target["status"], target["failed"], target["deleted"]) == ("partial", 1, 1)
        assert run.exit_code == 1
        assert (root / "locked" / "old").exists() and not (root / "open" / "old").exists()
