"""The volume root at run time: reachability, an empty root, and `--preflight` (docs/volumes.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import Result, run_cli
from tests.volumes.conftest import NOW, _workers, config, listing, make, sweep
from tests.volumes.unprivileged import AS_NOBODY, sandbox


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def two_targets(tmp_path: Path, first: Path, second: Path) -> str:
    """A config with volume targets `first` and `second`, in that order."""
    cfg = tmp_path / "two.toml"
    cfg.write_text(
        "".join(
            f'[[volumes]]\nname = "{name}"\npath = "{path}"\nmax_age = "7d"\n'
            f"workers = {_workers[0]}\n"
            for name, path in (("first", first), ("second", second))
        )
    )
    return str(cfg)


def test_root_missing_fails_only_its_target(tmp_path: Path, root: Path) -> None:
    """A root that does not exist fails its own target, saying so; the next target still runs."""
    missing = tmp_path / "not-mounted"
    make(root, "old", 30)
    result = run_cli(["--config", two_targets(tmp_path, missing, root)], {}, now=NOW)
    first = result.target("first")
    assert first["status"] == "failed" and first["level"] == "ERROR"
    assert first["error"].startswith(f"volume root {missing} does not exist")
    assert "traceback" not in first  # a reachability failure, not a bug
    second = result.target("second")
    assert (second["status"], second["deleted"]) == ("ok", 1)
    assert listing(root) == set()
    assert result.exit_code == 1 and result.summary["status"] == "failed"


def test_root_that_is_a_file_fails_only_its_target(tmp_path: Path, root: Path) -> None:
    """A root that is a file fails its own target as `is not a directory`; the next still runs."""
    a_file = make(tmp_path, "a-file", 30)
    make(root, "old", 30)
    result = run_cli(["--config", two_targets(tmp_path, a_file, root)], {}, now=NOW)
    first = result.target("first")
    assert first["status"] == "failed"
    assert first["error"].startswith(f"volume root {a_file} is not a directory")
    assert "traceback" not in first
    assert result.target("second")["deleted"] == 1
    assert a_file.exists() and result.exit_code == 1


def test_root_removed_after_config_check_fails_at_run_time(tmp_path: Path, root: Path) -> None:
    """--check-config accepts a root that is missing now: it is a run-time failure, not exit 2."""
    cfg = config(tmp_path, tmp_path / "later")
    assert run_cli(["--config", cfg, "--check-config"], {}).exit_code == 0
    result = run_cli(["--config", cfg], {}, now=NOW)
    assert result.exit_code == 1 and result.target("v")["status"] == "failed"


def test_root_require_mount_still_fails_an_existing_plain_directory(
    tmp_path: Path, root: Path
) -> None:
    """require_mount on a directory that is no mount point fails the target, naming it."""
    make(root, "old", 30)
    result = sweep(tmp_path, root, require_mount=True)
    error = result.target("v")["error"]
    assert str(root) in error and "not a mount point" in error and "require_mount" in error
    assert listing(root) == {"old"}


def test_root_empty_warns_and_hints_at_require_mount(tmp_path: Path, root: Path) -> None:
    """A root with no entries at all (an unmounted volume looks so) gives a target_warning."""
    result = sweep(tmp_path, root)
    warning = result.one("target_warning")
    assert warning["code"] == "root_empty" and warning["level"] == "WARNING"
    assert warning["target"] == "v" and warning["path"] == str(root)
    assert str(root) in warning["message"] and "require_mount = true" in warning["message"]
    assert result.target("v")["status"] == "ok" and result.exit_code == 0


def test_root_with_only_fresh_entries_gives_no_warning(tmp_path: Path, root: Path) -> None:
    """A root that holds entries, even none eligible, is not flagged."""
    make(root, "fresh", 1)
    assert sweep(tmp_path, root).events("target_warning") == []


def preflight(tmp_path: Path, root: Path, **keys: object) -> Result:
    return run_cli(["--config", config(tmp_path, root, **keys), "--preflight"], {}, now=NOW)


def test_preflight_good_root_is_ready_and_nothing_changes(tmp_path: Path, root: Path) -> None:
    """--preflight on a writable root: ready, exit 0, nothing deleted."""
    make(root, "old", 30)
    result = preflight(tmp_path, root)
    event = result.one("preflight")
    assert (event["ready"], event["problems"], event["target"]) == (True, [], "v")
    assert result.exit_code == 0 and listing(root) == {"old"}


@pytest.mark.parametrize(
    ("make_root", "words"),
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: make(tmp, "a-file", 30), "is not a directory"),
    ],
    ids=["missing", "a-file"],
)
def test_preflight_unusable_root_is_not_ready(
    tmp_path: Path, make_root: Callable[[Path], Path], words: str
) -> None:
    """--preflight on a missing root or a file: not ready, exit 1, the path and fault named."""
    bad = make_root(tmp_path)
    result = preflight(tmp_path, bad)
    event = result.one("preflight")
    assert event["ready"] is False and event["level"] == "WARNING"
    assert any(str(bad) in problem and words in problem for problem in event["problems"])
    assert result.exit_code == 1


def test_preflight_require_mount_on_plain_directory_is_not_ready(
    tmp_path: Path, root: Path
) -> None:
    """--preflight checks require_mount as the run does."""
    event = preflight(tmp_path, root, require_mount=True).one("preflight")
    assert event["ready"] is False and "not a mount point" in event["problems"][0]


@pytest.fixture
def read_only_root(tmp_path: Path, root: Path) -> Iterator[Path]:
    make(root, "old", 30)
    view = tmp_path / "ro"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(root), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (needs root and CAP_SYS_ADMIN)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_preflight_read_only_mount_is_not_ready(tmp_path: Path, read_only_root: Path) -> None:
    """A root mounted read-only is reported as such, though its mode bits allow writing."""
    result = preflight(tmp_path, read_only_root)
    event = result.one("preflight")
    assert event["ready"] is False and result.exit_code == 1
    assert [p for p in event["problems"] if "mounted read-only" in p and str(read_only_root) in p]
    assert listing(read_only_root) == {"old"}


def test_preflight_root_the_user_cannot_write_is_not_ready() -> None:
    """Run as an unprivileged user, a root it may read but not write is not ready, and the
    problem says who the process is and who owns the root; a root it may write is ready."""
    with sandbox() as box:
        locked, open_ = box.base / "locked", box.base / "open"
        for path, mode in ((locked, 0o755), (open_, 0o777)):
            make(path, "old", 30)
            path.chmod(mode)
        for path, ready in ((locked, False), (open_, True)):
            cfg = box.base / f"{path.name}.toml"
            cfg.write_text(f'[[volumes]]\nname = "v"\npath = "{path}"\nmax_age = "1d"\n')
            run = box.run(AS_NOBODY, "--config", str(cfg), "--preflight")
            event = run.events("preflight")[0]
            assert event["ready"] is ready, run.stdout
            assert run.exit_code == (0 if ready else 1)
            if not ready:
                (problem,) = event["problems"]
                assert str(locked) in problem and "not writable" in problem
                assert "uid 65534" in problem and "owned by 0:0 with mode 0755" in problem
            assert (path / "old").exists()


def test_root_behind_a_directory_the_user_cannot_search_is_not_called_missing() -> None:
    """Run as an unprivileged user, a root it cannot reach fails as `Permission denied`,
    naming the uid, not as a root that does not exist."""
    with sandbox() as box:
        root = box.base / "private" / "root"
        make(root, "old", 30)
        (box.base / "private").chmod(0o700)
        cfg = box.base / "cleanup.toml"
        cfg.write_text(f'[[volumes]]\nname = "v"\npath = "{root}"\nmax_age = "1d"\n')
        target = box.run(AS_NOBODY, "--config", str(cfg)).target("v")
        assert target["status"] == "failed"
        assert target["error"].startswith(f"volume root {root} cannot be opened: Permission denied")
        assert "uid 65534" in target["error"]
