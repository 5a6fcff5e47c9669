"""Whether this process's unlink or rmdir in a directory would be refused, judged without writing.

A dry run uses it to predict the failures of the real run, and `--preflight` to judge
whether the root is writable. It reads only metadata: mode bits, owner and group,
POSIX ACLs and the immutable / append-only attributes, never `access(2)`, which
answers "read-only file system" on the read-only mount of a dry-run twin when the
question is about the real run on the read-write mount.

The rule is the kernel's (`may_delete` in fs/namei.c), in its order:

1. the directory is immutable: EPERM;
2. the directory does not grant this process write and search permission: EACCES.
   Owner bits when the process's fsuid owns it; else a POSIX ACL when it has one
   (named user, then owning and named groups, all limited by the mask); else the
   group bits when its group is the fsgid or a supplementary group; else the other
   bits. CAP_DAC_OVERRIDE waives this check;
3. the directory is append-only: EPERM;
4. the directory is sticky, and the process owns neither it nor the entry and lacks
   CAP_FOWNER: EPERM;
5. the entry itself is immutable or append-only: EPERM;
6. (rmdir only) the directory to remove is a mount point: EBUSY.

A capability counts only in the process's effective set (a root container with all
capabilities dropped has none) and, as in the kernel, only over an inode whose owner
and group are mapped into the process's user namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from dataclasses import dataclass
from typing import Any

CAP_DAC_OVERRIDE = 1
CAP_FOWNER = 3
_WANT = 0o3  # write and search (execute) permission, in the low bits of a class

_IMMUTABLE = 0x10  # STATX_ATTR_IMMUTABLE
_APPEND = 0x20  # STATX_ATTR_APPEND
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000
_AT_STATX_DONT_SYNC = 0x4000  # cached attributes are enough: no round trip on NFS
_ENTRY_FLAGS = _AT_SYMLINK_NOFOLLOW | _AT_STATX_DONT_SYNC
_DIR_FLAGS = _ENTRY_FLAGS | _AT_EMPTY_PATH
_FLAGS = _IMMUTABLE | _APPEND

_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
    0x20,
)
_ACL_ENTRY = struct.Struct("<HHI")


@dataclass(frozen=True)
class Identity:
    """Who the kernel checks permissions for: this process's fs ids, groups and capabilities."""

    uid: int
    gid: int
    groups: frozenset[int]
    capabilities: int  # the effective set, as a bit mask
    uid_ranges: tuple[tuple[int, int], ...] = ((0, 1 << 32),)  # ids mapped into our user ns
    gid_ranges: tuple[tuple[int, int], ...] = ((0, 1 << 32),)

    @classmethod
    def of_this_process(cls) -> Identity:
        """Read once per run from /proc/self/status (fs ids, groups, CapEff)."""
        status = _proc_fields("/proc/self/status")
        uid, gid = os.geteuid(), os.getegid()
        groups = set(os.getgroups())
        capabilities = -1 if uid == 0 else 0  # without /proc: root is assumed privileged
        if "Uid" in status:
            uid = int(status["Uid"].split()[3])  # real, effective, saved, fs
            gid = int(status["Gid"].split()[3])
            groups = {int(g) for g in status.get("Groups", "").split()}
            capabilities = int(status.get("CapEff", "0"), 16)
        return cls(
            uid=uid,
            gid=gid,
            groups=frozenset(groups | {gid}),
            capabilities=capabilities,
            uid_ranges=_id_map("/proc/self/uid_map"),
            gid_ranges=_id_map("/proc/self/gid_map"),
        )

    def in_group(self, gid: int) -> bool:
        return gid in self.groups

    def capable(self, capability: int, uid: int, gid: int) -> bool:
        """Whether `capability` applies to an inode owned by `uid`:`gid` (see the module's rule)."""
        if not self.capabilities >> capability & 1:
            return False
        return _mapped(uid, self.uid_ranges) and _mapped(gid, self.gid_ranges)


def _proc_fields(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def _id_map(path: str) -> tuple[tuple[int, int], ...]:
    """The ids visible inside this user namespace; unmapped ones show as the overflow id."""
    try:
        with open(path, encoding="ascii") as handle:
            rows = [line.split() for line in handle]
        return tuple((int(row[0]), int(row[0]) + int(row[2])) for row in rows if len(row) == 3)
    except (OSError, ValueError):
        return ((0, 1 << 32),)


def _mapped(some_id: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(start <= some_id < end for start, end in ranges)


class _Attributes:
    """The immutable / append-only attributes of an inode, from statx(2) (no open, no ioctl)."""

    def __init__(self) -> None:
        self._buffer = ctypes.create_string_buffer(256)  # struct statx
        self._attributes = ctypes.c_uint64.from_buffer(self._buffer, 8)  # stx_attributes
        self._supported = ctypes.c_uint64.from_buffer(self._buffer, 56)  # stx_attributes_mask
        try:
            # Called per eligible file in a dry run: without argtypes, ctypes' own int and
            # bytes conversions make it about as cheap as os.lstat.
            self._call: Any = ctypes.CDLL(None).statx
        except (AttributeError, OSError):  # a libc without statx: attributes are not seen
            self._call = None

    def directory(self, fd: int) -> tuple[int, bool]:
        """The open directory's own attributes, and whether its filesystem reports them."""
        if self._call is None or self._call(fd, b"", _DIR_FLAGS, 0, self._buffer):
            return 0, False
        return self._attributes.value & _FLAGS, bool(self._supported.value & _FLAGS)

    def entry(self, dir_fd: int, name: str) -> int:
        """The attributes of `name` in `dir_fd` (0 when they cannot be read)."""
        if self._call is None or self._call(
            dir_fd, os.fsencode(name), _ENTRY_FLAGS, 0, self._buffer
        ):
            return 0
        return self._attributes.value & _FLAGS


@dataclass(frozen=True)
class DirAccess:
    """What unlinking in one directory, or removing it, would meet: read when the sweep enters it."""

    deny: int  # errno every unlink in it gets (0: none)
    sticky: bool  # sticky and not ours: entries we do not own need CAP_FOWNER (step 4)
    uid: int
    gid: int
    dev: int
    attributes: int  # its own immutable / append-only attributes
    entry_attributes: bool  # whether its filesystem reports them for entries


def _acl_grants(acl: bytes, st: os.stat_result, identity: Identity) -> bool:
    """The kernel's posix_acl_permission for write + search, for a process that is not the owner."""
    entries: list[tuple[int, int, int]] = [
        _ACL_ENTRY.unpack_from(acl, offset)
        for offset in range(4, len(acl) - _ACL_ENTRY.size + 1, _ACL_ENTRY.size)
    ]
    mask = next((perm for tag, perm, _id in entries if tag == _ACL_MASK), 0o7)
    found = False
    for tag, perm, some_id in entries:
        if tag == _ACL_USER and some_id == identity.uid:
            return perm & mask & _WANT == _WANT
        if (tag == _ACL_GROUP_OBJ and identity.in_group(st.st_gid)) or (
            tag == _ACL_GROUP and identity.in_group(some_id)
        ):
            found = True
            if perm & _WANT == _WANT:
                return perm & mask & _WANT == _WANT
        if tag == _ACL_OTHER:
            return not found and perm & _WANT == _WANT
    return False


class Predictor:
    """Judges unlinks and rmdirs for one identity; built once per run, used in every worker."""

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.of_this_process()
        self._attributes = _Attributes()

    def directory(self, fd: int, st: os.stat_result) -> DirAccess:
        """The access of the open directory `fd` (`st` its fstat); once per directory."""
        identity = self.identity
        attributes, supported = self._attributes.directory(fd)
        if attributes & _IMMUTABLE:
            deny = errno.EPERM
        elif not self._may_write(fd, st):
            deny = errno.EACCES
        elif attributes & _APPEND:
            deny = errno.EPERM
        else:
            deny = 0
        sticky = bool(st.st_mode & stat.S_ISVTX) and st.st_uid != identity.uid
        return DirAccess(deny, sticky, st.st_uid, st.st_gid, st.st_dev, attributes, bool(supported))

    def _may_write(self, fd: int, st: os.stat_result) -> bool:
        identity = self.identity
        mode = st.st_mode
        if st.st_uid == identity.uid:
            granted = mode >> 6 & _WANT == _WANT
        elif mode & 0o070 and (acl := _read_acl(fd)):
            granted = _acl_grants(acl, st, identity)
        elif identity.in_group(st.st_gid):
            granted = mode >> 3 & _WANT == _WANT
        else:
            granted = mode & _WANT == _WANT
        return granted or identity.capable(CAP_DAC_OVERRIDE, st.st_uid, st.st_gid)

    def unlink(self, parent: DirAccess | None, dir_fd: int, name: str, st: os.stat_result) -> int:
        """The errno unlinking `name` (`st` its lstat) in `parent` would get; 0 if none."""
        if parent is None:
            raise ValueError("a dry run's directory was entered without its access")
        if parent.deny:
            return parent.deny
        if parent.sticky and not self._owns(st.st_uid, st.st_gid):
            return errno.EPERM
        if parent.entry_attributes and self._attributes.entry(dir_fd, name):
            return errno.EPERM
        return 0

    def rmdir(self, parent: DirAccess | None, child: DirAccess | None) -> int:
        """The errno removing the (empty) directory `child` from `parent` would get; 0 if none."""
        if parent is None or child is None:
            raise ValueError("a dry run's directory was entered without its access")
        if parent.deny:
            return parent.deny
        if parent.sticky and not self._owns(child.uid, child.gid):
            return errno.EPERM
        if child.attributes:
            return errno.EPERM
        if child.dev != parent.dev:
            return errno.EBUSY  # a mount point (entered with one_file_system = false)
        return 0

    def _owns(self, uid: int, gid: int) -> bool:
        """Whether a sticky directory lets this process remove an entry owned by `uid`:`gid`."""
        return uid == self.identity.uid or self.identity.capable(CAP_FOWNER, uid, gid)


def _read_acl(fd: int) -> bytes:
    try:
        return os.getxattr(fd, _ACL_XATTR)
    except OSError:  # none (ENODATA), or no ACLs on this filesystem: the mode bits decide
        return b""


def root_problems(path: str, fd: int, st: os.stat_result, predictor: Predictor) -> list[str]:
    """What keeps this process from listing and deleting under the open root `fd` (`st` its
    fstat, `path` its name as shown), each a sentence that says what to fix; reads metadata
    only. Writability is judged both from the metadata, as a dry run predicts it, and by
    access(2), which alone sees a read-only mount."""
    identity = predictor.identity
    who = f"this process (uid {identity.uid}, gid {identity.gid}"
    who += (
        f", groups {sorted(identity.groups - {identity.gid})})" if len(identity.groups) > 1 else ")"
    )
    owner = f"owned by {st.st_uid}:{st.st_gid} with mode {stat.S_IMODE(st.st_mode):04o}"
    fix = (
        "give this UID or one of its groups write and search permission there (securityContext "
        "fsGroup or runAsUser, or chown/chmod on the volume)"
    )
    problems = []
    if not _access(fd, os.R_OK | os.X_OK):
        problems.append(
            f"volume root {path} cannot be listed and searched by {who}: it is {owner}; "
            + fix.replace("write and search", "read and search")
        )
    deny = predictor.directory(fd, st).deny
    if deny == errno.EACCES:
        problems.append(f"volume root {path} is not writable by {who}: it is {owner}; {fix}")
    elif deny == errno.EPERM:
        problems.append(
            f"volume root {path} is immutable or append-only (chattr +i / +a): nothing can be "
            "deleted in it; clear the attribute with chattr -i / -a"
        )
    if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
        problems.append(
            f"volume root {path} is mounted read-only: mount it read-write for a real run "
            "(in Kubernetes: readOnly: false on the volumeMount)"
        )
    elif not deny and not _access(fd, os.W_OK):
        problems.append(
            f"volume root {path} refuses writes to {who} although its owner and mode bits "
            "allow them: check the volume's ACLs, NFS export options (root_squash) or "
            "security policy (SELinux, AppArmor)"
        )
    return problems


def _access(fd: int, mode: int) -> bool:
    """access(2) on the open directory `fd`, for the effective ids a deletion is checked against."""
    effective = os.access in os.supports_effective_ids
    return os.access(".", mode, dir_fd=fd, effective_ids=effective)
