"""Stores on network file systems are detected (issue 12, item 7).

The detection reads a mount table; the tests give it tables with network
mounts (the machine has none to mount), and open real stores on the local
file system, which must stay quiet.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from typedstore import FilesystemStore, StoreError, make_store, mounts


def table(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "mounts"
    path.write_text("\n".join(["/dev/vda / ext4 rw 0 0", *lines]) + "\n")
    return str(path)


def test_a_path_under_a_network_mount_is_found(tmp_path: Path) -> None:
    shared = tmp_path / "shared dir"
    (shared / "jobs").mkdir(parents=True)
    escaped = str(shared).replace(" ", "\\040")
    mounts_file = table(tmp_path, f"server:/export {escaped} nfs4 rw 0 0",
                        f"host:/x {tmp_path}/sshfs fuse.sshfs rw 0 0")
    found = mounts.mount_of(str(shared / "jobs"), mounts_file)
    assert found == mounts.Mount(str(shared), "nfs4", "server:/export")
    assert mounts.mount_of(str(tmp_path / "elsewhere"), mounts_file).fstype == "ext4"
    assert mounts.mount_of(str(tmp_path), "/nonexistent/mounts") is None


def test_warn_once_error_or_ignore(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mounts_file = table(tmp_path, f"srv:/share {tmp_path}/smb cifs rw 0 0")
    store = str(tmp_path / "smb" / "jobs")
    with caplog.at_level(logging.WARNING, logger="typedstore.mounts"):
        assert mounts.check(store, "file store X", "warn", mounts_file) is not None
        assert mounts.check(store, "file store X", "warn", mounts_file) is not None
    warnings = [r for r in caplog.records if r.name == "typedstore.mounts"]
    assert len(warnings) == 1
    assert "cifs" in warnings[0].getMessage() and "PostgreSQL or MariaDB" in \
        warnings[0].getMessage()
    with pytest.raises(StoreError, match="network file system"):
        mounts.check(store, "file store X", "error", mounts_file)
    assert mounts.check(store, "file store X", "ignore", mounts_file) is None
    with pytest.raises(ValueError):
        mounts.check(store, "file store X", "loud", mounts_file)


def test_local_stores_are_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="typedstore.mounts"):
        FilesystemStore(tmp_path / "jobs", network_filesystem="error").close()
        make_store(f"sqlite:///{tmp_path / 'db' / 'x.db'}", network_filesystem="error").close()
    assert not [r for r in caplog.records if r.name == "typedstore.mounts"]
    with pytest.raises(ValueError):
        FilesystemStore(tmp_path / "jobs2", network_filesystem="sometimes")


def test_statfs_magic_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The magic number read through ctypes is the one ``stat -f`` (coreutils)
    reports; a file system known by its magic is found whatever the mount table
    calls it."""
    import subprocess

    for path in (str(tmp_path), "/proc"):
        shown = subprocess.run(["stat", "-f", "-c", "%t", path], capture_output=True,
                               text=True, check=True).stdout.strip()
        assert mounts.statfs_magic(path) == int(shown, 16)
    here = mounts.statfs_magic(str(tmp_path))
    assert here is not None and here not in mounts.NETWORK_MAGICS
    monkeypatch.setitem(mounts.NETWORK_MAGICS, here, "pretend-nfs")
    with pytest.raises(StoreError, match="pretend-nfs"):
        FilesystemStore(tmp_path / "jobs", network_filesystem="error")
