"""The permission rule a dry run predicts with, for identities this test process is not."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanup.targets.volumes.predict import (
    CAP_DAC_OVERRIDE,
    CAP_FOWNER,
    DirAccess,
    Identity,
    Predictor,
)

ALL = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_FOWNER)


@pytest.fixture
def workers() -> int:
    """No sweep runs here: not run once per worker count."""
    return 1


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A directory these tests give to other owners (chown needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory to another owner")
    path = tmp_path / "d"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield path, fd
    finally:
        os.close(fd)


def access(identity: Identity, fd: int) -> DirAccess:
    return Predictor(identity).directory(fd, os.fstat(fd))


Ranges = tuple[tuple[int, int], ...]
EVERY_ID: Ranges = ((0, 1 << 32),)


def person(uid: int, *groups: int, capabilities: int = 0, ids: Ranges = EVERY_ID) -> Identity:
    """uid (gid the same) in `groups`, with `capabilities`, in a namespace mapping `ids`."""
    return Identity(uid, uid, frozenset({uid, *groups}), capabilities, ids, ids)


def test_rule_owner_bits_apply_to_the_owner_even_when_others_may_write(
    directory: tuple[Path, int],
) -> None:
    """The owner class decides for the owner: r-x for the owner denies, whatever others get."""
    path, fd = directory
    os.chown(path, 1000, 1000)
    os.chmod(path, 0o577)
    assert access(person(1000), fd).deny == errno.EACCES
    assert access(person(2000), fd).deny == 0
    assert access(person(2000, 1000), fd).deny == 0


def test_rule_group_bits_for_a_supplementary_group(directory: tuple[Path, int]) -> None:
    """Group bits apply to a member of the directory's group; other bits to the rest."""
    path, fd = directory
    os.chown(path, 1000, 4242)
    os.chmod(path, 0o770)
    assert access(person(2000, 4242), fd).deny == 0
    assert access(person(2000), fd).deny == errno.EACCES


def test_rule_dac_override_ignored_over_an_owner_outside_the_user_namespace(
    directory: tuple[Path, int],
) -> None:
    """A capability counts only over an inode whose owner is mapped into the namespace."""
    path, fd = directory
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o755)
    inside = ((0, 65534),)  # 65534 is where unmapped ids show up
    mapped = person(0, capabilities=ALL)
    unmapped = person(0, capabilities=ALL, ids=inside)
    assert access(mapped, fd).deny == 0
    assert access(unmapped, fd).deny == errno.EACCES
    assert access(person(0), fd).deny == errno.EACCES  # root with no capabilities at all


def test_rule_acl_named_group_grants_and_mask_limits(directory: tuple[Path, int]) -> None:
    """A named-group ACL entry grants its members write, up to the mask."""
    path, fd = directory
    os.chown(path, 1000, 1000)
    os.chmod(path, 0o755)

    def set_acl(mask: int) -> None:
        entries = [(0x01, 7, 0xFFFFFFFF), (0x04, 5, 0xFFFFFFFF), (0x08, 7, 4242)]
        entries += [(0x10, mask, 0xFFFFFFFF), (0x20, 5, 0xFFFFFFFF)]
        value = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
        try:
            os.setxattr(path, "system.posix_acl_access", value)
        except OSError as exc:
            pytest.skip(f"no POSIX ACLs on this filesystem: {exc.strerror}")

    set_acl(7)
    assert access(person(2000, 4242), fd).deny == 0
    assert access(person(2000), fd).deny == errno.EACCES
    set_acl(5)
    assert access(person(2000, 4242), fd).deny == errno.EACCES


def test_rule_sticky_directory_needs_ownership_or_fowner(
    directory: tuple[Path, int], tmp_path: Path
) -> None:
    """In a sticky directory only the entry's owner, the directory's, or CAP_FOWNER may unlink."""
    path, fd = directory
    os.chown(path, 1000, 1000)
    os.chmod(path, 0o1777)
    entry = path / "f"
    entry.write_text("x")
    os.chown(entry, 3000, 3000)
    st = os.lstat(entry)
    for identity, expected in (
        (person(2000), errno.EPERM),
        (person(3000), 0),
        (person(1000), 0),
        (person(2000, capabilities=1 << CAP_FOWNER), 0),
    ):
        predictor = Predictor(identity)
        assert predictor.unlink(predictor.directory(fd, os.fstat(fd)), fd, "f", st) == expected
