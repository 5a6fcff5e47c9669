"""A dry run predicts the permission failures of the real run (docs/getting-started.md).

The dry run and the real run are run as the same identity on the same tree, a tree with
directories that identity may and may not write; everything the dry run reports must
be what the real run then does.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.volumes.conftest import config
from tests.volumes.unprivileged import (
    AS_ROOT_WITHOUT_CAPABILITIES,
    NOBODY,
    Run,
    Sandbox,
    sandbox,
)

OTHER = 1000  # owns most of the tree: neither nobody nor root
GROUP = 4242  # a supplementary group of the identities below
OLD = 30 * 86400
IDENTITIES: dict[str, tuple[int, Sequence[str]]] = {
    "nobody": (
        NOBODY,
        ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={GROUP}"),
    ),
    "root-without-capabilities": (0, (*AS_ROOT_WITHOUT_CAPABILITIES, f"--groups={GROUP}")),
    "root": (0, ()),
}
COUNTED = ("scanned", "matched", "failed", "bytes_freed")
DENIED, NOT_PERMITTED = "Permission denied", "Operation not permitted"
# What the real run fails on; with every capability, only the attributes hold.
UNPRIVILEGED_FAILURES = {
    ("locked/a", DENIED),
    ("locked/b", DENIED),
    ("locked/sub", DENIED),
    ("acl-deny/i", DENIED),
    ("unreadable", DENIED),
    ("sticky/theirs", NOT_PERMITTED),
    ("open/frozen", NOT_PERMITTED),
    ("append/old", NOT_PERMITTED),
}
EXPECTED_FAILURES = {
    "nobody": UNPRIVILEGED_FAILURES,
    "root-without-capabilities": UNPRIVILEGED_FAILURES,
    "root": {("open/frozen", NOT_PERMITTED), ("append/old", NOT_PERMITTED)},
}


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with sandbox() as made:
        yield made


def old(path: Path) -> None:
    stamp = time.time() - OLD
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def acl(*entries: tuple[int, int, int]) -> bytes:
    """A system.posix_acl_access value: (tag, permissions, id) entries, sorted as the kernel wants."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


_ANY = 0xFFFFFFFF
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def build_tree(root: Path, uid: int) -> None:
    """Old files in directories `uid` (in group GROUP) may and may not write; all of it old.

    Left for the real run to refuse: the files of locked/ (no write permission) and the
    directory locked/sub once emptied, sticky/theirs (a sticky directory), acl-deny/old
    (an ACL narrower than the mode bits), open/frozen (immutable), append/old (an
    append-only directory); unreadable/ cannot even be entered.
    """
    layout: dict[str, tuple[int, int, int]] = {  # directory: (owner, group, mode)
        "": (OTHER, OTHER, 0o777),
        "locked": (OTHER, OTHER, 0o755),
        "locked/sub": (OTHER, OTHER, 0o777),
        "open": (OTHER, OTHER, 0o777),
        "sticky": (OTHER, OTHER, 0o1777),
        "mine": (uid, uid, 0o755),
        "group": (OTHER, GROUP, 0o775),
        "unreadable": (OTHER, OTHER, 0o700),
        "acl-allow": (OTHER, OTHER, 0o755),
        "acl-deny": (OTHER, OTHER, 0o757),
        "append": (OTHER, OTHER, 0o777),
    }
    files = {
        "top": OTHER,
        "locked/a": OTHER,
        "locked/b": uid,
        "locked/sub/c": OTHER,
        "open/d": OTHER,
        "open/frozen": OTHER,
        "sticky/theirs": OTHER,
        "sticky/mine": uid,
        "mine/e": OTHER,
        "group/f": OTHER,
        "unreadable/g": OTHER,
        "acl-allow/h": OTHER,
        "acl-deny/i": OTHER,
        "append/old": OTHER,
    }
    for rel in layout:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel, owner in files.items():
        (root / rel).write_text("x" * len(rel))
        os.chown(root / rel, owner, owner)
        old(root / rel)
    (root / "locked" / "fresh").write_text("new")
    (root / "empty-old").mkdir()
    layout["empty-old"] = (uid, uid, 0o755)
    for rel, (owner, group, mode) in sorted(layout.items(), reverse=True):
        os.chown(root / rel, owner, group)
        os.chmod(root / rel, mode)
        old(root / rel)
    rwx, r_x = 0o7, 0o5
    os.setxattr(
        root / "acl-allow",
        "system.posix_acl_access",
        acl(
            (_USER_OBJ, rwx, _ANY),
            (_USER, rwx, uid),
            (_GROUP_OBJ, r_x, _ANY),
            (_MASK, rwx, _ANY),
            (_OTHER, r_x, _ANY),
        ),
    )
    os.setxattr(
        root / "acl-deny",
        "system.posix_acl_access",
        acl(
            (_USER_OBJ, rwx, _ANY),
            (_USER, r_x, uid),
            (_GROUP_OBJ, r_x, _ANY),
            (_MASK, r_x, _ANY),
            (_OTHER, rwx, _ANY),
        ),
    )
    for rel in ("", "acl-allow", "acl-deny"):
        old(root / rel)
    for flag, rel in (("+i", "open/frozen"), ("+a", "append")):
        if subprocess.run(["chattr", flag, str(root / rel)], capture_output=True).returncode:
            pytest.skip(f"chattr {flag} is not supported on this filesystem")


def failures(run: Run, root: Path) -> set[tuple[str, str]]:
    """(path relative to the root, error) of each item_failed line."""
    return {
        (str(Path(line["path"]).relative_to(root)), line["error"])
        for line in run.events("item_failed")
    }


def counted(run: Run) -> dict[str, Any]:
    target = run.target("v")
    return {name: target[name] for name in (*COUNTED, "status")} | {"exit": run.exit_code}


@pytest.fixture
def read_only_view(box: Sandbox) -> Iterator[Path]:
    """A read-only bind mount of the sandbox's tree, as the dry-run twin mounts a volume."""
    view = box.base / "ro"
    view.mkdir()
    (box.base / "root").mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "--bind", str(box.base / "root"), str(view)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot bind-mount here (needs CAP_SYS_ADMIN): {mounted.stderr!r}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


@pytest.mark.parametrize("identity", list(IDENTITIES))
def test_predict_dry_run_counts_and_failures_equal_the_real_run(
    box: Sandbox, read_only_view: Path, identity: str
) -> None:
    """As the same identity, the dry run's counters, failures, status and exit code are the
    real run's, also when the dry run sees the tree through a read-only mount."""
    uid, as_identity = IDENTITIES[identity]
    root = box.base / "root"
    build_tree(root, uid)
    cfg = config(box.base, root, max_age="7d", remove_empty_dirs=True)
    ro_cfg = box.base / "ro.toml"
    ro_cfg.write_text(Path(cfg).read_text().replace(f'"{root}"', f'"{read_only_view}"'))

    dry = box.run(as_identity, "--config", cfg, "--dry-run")
    dry_ro = box.run(as_identity, "--config", str(ro_cfg), "--dry-run")
    real = box.run(as_identity, "--config", cfg)

    assert failures(real, root) == EXPECTED_FAILURES[identity], real.stdout + real.stderr
    assert real.target("v")["deleted"] > 0
    assert counted(dry) == counted(real), dry.stdout
    assert counted(dry_ro) == counted(real), dry_ro.stdout
    assert failures(dry, root) == failures(real, root)
    assert failures(dry_ro, read_only_view) == failures(real, root)
    for run in (dry, dry_ro):
        for line in run.events("item_failed"):
            # Only a failure of the dry run's own reading (the unreadable directory) is real.
            assert line.get("predicted") is (None if line["path"].endswith("unreadable") else True)
    assert not dry.stderr and not real.stderr
