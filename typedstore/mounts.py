"""Detect stores on network file systems, and say so once.

SQLite's locking and the file store's locks (``flock`` through filelock) and
atomic renames are only as good as the file system's. Network file systems
break them in ways that corrupt data without an error: NFS and SMB clients
cache attributes and may lose or fake locks, sshfs has no locks across
clients; SQLite's documentation warns against its use on them. A store
opened on one gets one warning naming the risk and the alternative (a
PostgreSQL or MariaDB store); ``network_filesystem="error"`` refuses it,
``"ignore"`` stays quiet (default: :data:`~typedstore.defaults.NETWORK_FILESYSTEM`).

The file system is read from the mount table (``/proc/self/mounts`` on
Linux): the mount point that is the longest prefix of the store's resolved
path gives its type. Python has no ``statfs``, so file systems are known by
their type names, not their magic numbers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .errors import StoreError

log = logging.getLogger(__name__)

#: Types of network file systems in the mount table (``fuse.sshfs`` and other
#: FUSE network clients included).
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "beegfs", "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs",
    "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "davfs", "fuse.davfs2",
})

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
        return None
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
