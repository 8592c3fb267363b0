"""Detect stores on network file systems, and say so once.

SQLite's locking and the file store's locks (``flock`` through filelock) and
atomic renames are only as good as the file system's. Network file systems
break them in ways that corrupt data without an error: NFS and SMB clients
cache attributes and may lose or fake locks, sshfs has no locks across
clients; SQLite's documentation warns against its use on them. A store
opened on one gets one warning naming the risk and the alternative (a
PostgreSQL or MariaDB store); ``network_filesystem="error"`` refuses it,
``"ignore"`` stays quiet (default: :data:`~typedstore.defaults.NETWORK_FILESYSTEM`).

The file system is known two ways, either of which is enough: by its type
name in the mount table (``/proc/self/mounts`` on Linux: the mount point
that is the longest prefix of the store's resolved path), and by the magic
number ``statfs(2)`` gives for the path (called through ``ctypes``: Python
has no ``statfs``), which also holds where the mount table cannot be read or
names the type otherwise. FUSE file systems share one magic number, local
and remote alike, so those are known by name only (``fuse.sshfs``...).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass

from .errors import StoreError

log = logging.getLogger(__name__)

#: Types of network file systems in the mount table (``fuse.sshfs`` and other
#: FUSE network clients included).
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs",
    "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "davfs", "fuse.davfs2",
    # Shared with a hypervisor's host, or cluster file systems shared by hosts.
    "virtiofs", "vboxsf", "vmhgfs", "fuse.vmhgfs-fuse", "gfs2", "ocfs2", "coda",
    "pvfs2", "orangefs", "fuse.juicefs", "fuse.mfs", "fuse.lizardfs", "fuse.moosefs",
    "fuse.gvfsd-fuse", "fuse.s3ql", "fuse.goofys", "fuse.blobfuse", "fuse.blobfuse2",
    "fuse.ossfs", "fuse.cvmfs2",
})

#: ``statfs(2)`` magic numbers of network and cluster file systems (Linux's
#: ``include/uapi/linux/magic.h`` and the file systems' own sources).
NETWORK_MAGICS: dict[int, str] = {
    0x6969: "nfs", 0x517B: "smbfs", 0xFF534D42: "cifs", 0xFE534D42: "smb3",
    0x564C: "ncpfs", 0x5346414F: "afs", 0x6B414653: "kafs", 0x01021997: "9p",
    0x00C36400: "ceph", 0x0BD00BD0: "lustre", 0x47504653: "gpfs", 0x19830326: "beegfs",
    0x01161970: "gfs2", 0x7461636F: "ocfs2", 0x73757245: "coda", 0x50495046: "pvfs2",
    0x786F4256: "vboxsf", 0x19800202: "glusterfs",
}

MOUNT_TABLE = "/proc/self/mounts"

_warned: set[str] = set()


@dataclass(frozen=True)
class Mount:
    """One line of the mount table: where, what type, from what."""

    point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # The mount table writes spaces, tabs, newlines and backslashes as \\ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(path: str, table: str = MOUNT_TABLE) -> Mount | None:
    """The mount holding ``path`` (resolved), or None if the table cannot be read."""
    try:
        with open(table, encoding="utf-8", errors="surrogateescape") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    resolved = os.path.realpath(path)
    best: Mount | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, fields[2], _unescape(fields[0]))
    return best


def statfs_magic(path: str) -> int | None:
    """The file system magic number ``statfs(2)`` gives for ``path`` (Linux),
    or None where it cannot be had."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit
        if libc.statfs(os.fsencode(path), buffer) != 0:
            return None
    except (OSError, AttributeError) as exc:
        log.debug("statfs(%s) is not available: %s", path, exc)
        return None
    # f_type is the first member, a C long (__fsword_t), in every Linux ABI.
    value = ctypes.c_long.from_buffer(buffer).value
    return value & 0xFFFFFFFF


def check(path: str, what: str, policy: str, table: str = MOUNT_TABLE) -> Mount | None:
    """Warn (once per mount point), raise StoreError, or stay quiet, as
    ``policy`` (``"warn"``, ``"error"``, ``"ignore"``) says, if ``path`` is on
    a network file system; return its mount then. ``what`` names the store."""
    if policy not in ("warn", "error", "ignore"):
        raise ValueError(f"network_filesystem must be 'warn', 'error' or 'ignore', "
                         f"not {policy!r}")
    if policy == "ignore":
        return None
    mount = mount_of(path, table)
    if mount is None or mount.fstype not in NETWORK_TYPES:
        magic = statfs_magic(path)
        if magic not in NETWORK_MAGICS:
            return None
        fstype = NETWORK_MAGICS[magic]
        mount = Mount(mount.point if mount is not None else path, fstype,
                      mount.source if mount is not None else f"statfs magic {magic:#x}")
    message = (
        f"{what} is on a network file system ({mount.fstype} {mount.source} at "
        f"{mount.point}): its locks and renames may not hold between hosts, and concurrent "
        "writers can corrupt the store without an error. Use a PostgreSQL or MariaDB "
        "store for stores shared between hosts; pass "
        "network_filesystem='ignore' to silence this, 'error' to refuse")
    if policy == "error":
        raise StoreError(message)
    if mount.point not in _warned:
        _warned.add(mount.point)
        log.warning("%s", message)
    return mount
