"""GC3Pie's counter file as typedstore uses it (the real GC3Pie side is in tests/gc3pie)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from typedstore import LockTimeout
from typedstore.gc3pie_ids import Gc3PieCounter, gc3pie_id_file


def test_reads_and_writes_gc3pie_format(tmp_path: Path) -> None:
    path = tmp_path / "next_id.txt"
    # gc3libs.utils.progressive_number: the last issued number, 8 hex digits first.
    path.write_text("0000001f -- DO NOT REMOVE OR ALTER THIS FILE: it is used internally by "
                    "the gc3libs\n")
    counter = Gc3PieCounter(path)
    assert counter(5) == 0x20
    assert path.read_text().startswith("00000024 -- DO NOT REMOVE")
    assert counter() == 0x25


def test_missing_file_starts_at_one_and_floor_moves_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "next_id.txt"
    assert Gc3PieCounter(path)() == 1
    assert Gc3PieCounter(path, floor=lambda: 100)(3) == 100
    assert int(path.read_text()[:8], 16) == 102


def test_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GC3PIE_ID_FILE", str(tmp_path / "ids.txt"))
    assert gc3pie_id_file() == tmp_path / "ids.txt"


def test_held_lock_ends_in_lock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "next_id.txt"
    holder = tmp_path / "other-host.123"
    holder.touch()
    os.link(holder, str(path) + ".lock")  # as lockfile.LinkLockFile holds it
    with pytest.raises(LockTimeout) as info:
        Gc3PieCounter(path, timeout=0.2)()
    assert info.value.lock == str(path) + ".lock"
    assert info.value.waited >= 0.2
    assert not path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next_id.txt.lock", "other-host.123"]


def test_lock_is_released(tmp_path: Path) -> None:
    path = tmp_path / "next_id.txt"
    counter = Gc3PieCounter(path)
    counter()
    counter()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next_id.txt"]


def test_lock_left_by_a_dead_typedstore_process_is_broken(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    path = tmp_path / "next_id.txt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    holder = tmp_path / f"{socket.gethostname()}-1f.{pid}.typedstore"
    holder.touch()
    os.link(holder, str(path) + ".lock")  # a typedstore process killed holding the lock
    assert Gc3PieCounter(path, timeout=5)() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next_id.txt"]


def test_lock_of_a_live_process_is_kept(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "next_id.txt"
    holder = tmp_path / f"{socket.gethostname()}-1f.{os.getpid()}.typedstore"
    holder.touch()
    os.link(holder, str(path) + ".lock")
    with pytest.raises(LockTimeout):
        Gc3PieCounter(path, timeout=0.2)()
    assert (tmp_path / "next_id.txt.lock").exists()
