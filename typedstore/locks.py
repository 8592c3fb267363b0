"""A lock between processes on one file, for the file store's commits.

``filelock`` (used for the rarely taken id counter) opens, locks, unlocks and
closes its lock file on every acquisition: about 100 µs here, on the path of
every file-store save. This lock keeps its file open and only calls
``flock``, about 1 µs. It is reentrant within a process (a commit may finish
a crashed journal while holding it) and reopens its file in a forked child
(``flock`` locks belong to the open file, which a child shares).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

from .errors import LockTimeout

_POLL = 0.005


class ProcessLock:
    """An exclusive, reentrant lock shared by every process that opens ``path``.

    Attributes:
        path (Path): the lock file (created if missing, never removed).
        timeout (float): seconds to wait before raising :class:`LockTimeout`.
        owner (str): the store it guards, for the message (password hidden).
        what (str): what the lock is for, for the message ("commit lock").
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float, owner: str = "",
                 what: str = "lock") -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.owner = owner
        self.what = what
        self._fd: int | None = None
        self._owner_pid = 0
        self._depth = 0
        self._thread_lock = threading.RLock()

    def _file(self) -> int:
        if self._fd is None or self._owner_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._owner_pid = os.getpid()
        return self._fd

    def __enter__(self) -> ProcessLock:
        self._thread_lock.acquire()
        try:
            if self._depth == 0:
                self._acquire(self._file())
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def _acquire(self, fd: int) -> None:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited > self.timeout:
                    owner = f"{self.owner}: " if self.owner else ""
                    raise LockTimeout(
                        f"{owner}waited {waited:.1f} s for the {self.what} {self.path}, held "
                        f"by another process (lock_timeout={self.timeout:g} s); nothing was "
                        "written", str(self.path), waited, self.owner) from None
                time.sleep(_POLL)

    def __exit__(self, *exc: Any) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's file and state (do not unlock it)."""
        self._fd = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    def close(self) -> None:
        if self._fd is not None and self._owner_pid == os.getpid():
            os.close(self._fd)
        self._fd = None
