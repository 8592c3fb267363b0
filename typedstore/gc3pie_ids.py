"""GC3Pie's id counter file, shared with GC3Pie processes.

GC3Pie 2.6.8 numbers every new object, on every backend, from one counter file
(``gc3libs.utils.progressive_number``): ``$GC3PIE_ID_FILE``, by default
``~/.gc3/next_id.txt``. The file starts with the last number issued as eight
hexadecimal digits; GC3Pie locks it with the ``lockfile`` package's hard-link
protocol (``PATH.lock`` is a hard link to a file unique to the locker) and then
overwrites it. Its stores never check whether an id is taken: a save over an
existing id replaces that record.

So while GC3Pie and typedstore processes write one store, typedstore must take
its numbers from the same counter, under the same lock: :class:`Gc3PieCounter`
does, and it also moves the counter past the largest id already in the store
(``floor``) so neither side reissues one. This module speaks the file format
and the lock protocol; it imports nothing of GC3Pie.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .defaults import GC3PIE_ID_FILE_DEFAULT, GC3PIE_ID_FILE_ENV, GC3PIE_ID_LOCK_TIMEOUT
from .errors import LockTimeout, StoreError
from .tempfiles import replace_file

log = logging.getLogger(__name__)

_UNIQUE_SUFFIX = ".typedstore"

_TRAILER = " -- DO NOT REMOVE OR ALTER THIS FILE: it is used internally by the gc3libs\n"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def gc3pie_id_file() -> Path:
    """The counter file GC3Pie uses in this environment."""
    return Path(os.path.expanduser(os.environ.get(GC3PIE_ID_FILE_ENV, GC3PIE_ID_FILE_DEFAULT)))


class LinkLock:
    """The ``lockfile`` package's hard-link lock on ``PATH`` (what GC3Pie 2.6.8 uses).

    Holding the lock means ``PATH.lock`` is a hard link to a file only this
    locker created. A link that already exists belongs to someone else: wait,
    up to ``timeout`` seconds, then raise :class:`LockTimeout`. A lock left by
    a killed process stays until removed by hand, as with GC3Pie.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.lock_file = str(path.absolute()) + ".lock"
        self.timeout = timeout

    def acquire(self) -> str:
        """Take the lock; return the unique file to hand to :meth:`release`."""
        unique = os.path.join(
            os.path.dirname(self.lock_file),
            f"{socket.gethostname()}-{threading.get_ident():x}.{os.getpid()}{_UNIQUE_SUFFIX}",
        )
        open(unique, "wb").close()
        start = time.monotonic()
        while True:
            try:
                os.link(unique, self.lock_file)
                return unique
            except FileExistsError:
                pass
            if os.stat(unique).st_nlink == 2:
                return unique  # the link is ours (a link call that raised but was made)
            if self._break_dead_typedstore_lock():
                continue
            waited = time.monotonic() - start
            if waited > self.timeout:
                os.unlink(unique)
                raise LockTimeout(
                    f"GC3Pie's id counter lock {self.lock_file} is still held after {waited:.0f} s "
                    "(a GC3Pie or typedstore process holds it, or one was killed holding it: "
                    "then remove the .lock file)", self.lock_file, waited)
            time.sleep(0.02)

    def _break_dead_typedstore_lock(self) -> bool:
        """Remove the lock if a typedstore process of this host holds it and is gone.

        Only typedstore's own unique files (``HOST-THREAD.PID.typedstore``) can
        be judged: GC3Pie's do not say which process made them. Leftover unique
        files of dead typedstore processes are removed on the way. Returns true
        if the lock was broken.
        """
        directory = os.path.dirname(self.lock_file)
        prefix = f"{socket.gethostname()}-"
        try:
            lock_inode = os.stat(self.lock_file).st_ino
            names = os.listdir(directory)
        except FileNotFoundError:
            return True  # released meanwhile: try again
        broke = False
        for name in names:
            if not (name.startswith(prefix) and name.endswith(_UNIQUE_SUFFIX)):
                continue
            pid_text = name[: -len(_UNIQUE_SUFFIX)].rpartition(".")[2]
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            path = os.path.join(directory, name)
            try:
                holds = os.stat(path).st_ino == lock_inode
                if holds:
                    log.warning("GC3Pie's id counter lock %s was left by typedstore process %s, "
                                "which is gone: removing it", self.lock_file, pid_text)
                    os.unlink(self.lock_file)
                    broke = True
                os.unlink(path)
            except FileNotFoundError:
                continue
        return broke

    def release(self, unique: str) -> None:
        os.unlink(unique)
        os.unlink(self.lock_file)


class Gc3PieCounter:
    """A number sequence that is GC3Pie's own counter file.

    Calling it with ``n`` reserves ``n`` consecutive numbers and returns the
    first (the :data:`~typedstore.ids.NextIdFn` convention); GC3Pie will never
    issue them. ``floor`` (called under the lock) gives the smallest number
    that may be issued, for example one more than the largest id in the store.

    Raises:
        LockTimeout: the lock was not obtained within ``timeout`` seconds.
        StoreError: the file cannot be read or written (naming it).
    """

    def __init__(self, path: Path | None = None, floor: Callable[[], int] | None = None,
                 timeout: float = GC3PIE_ID_LOCK_TIMEOUT) -> None:
        self.path = path or gc3pie_id_file()
        self.floor = floor
        self._lock = LinkLock(self.path, timeout)
        self._thread_lock = threading.Lock()

    def reset_locks(self) -> None:
        """A new thread lock (a forked child must not inherit the parent's state)."""
        self._thread_lock = threading.Lock()

    def __call__(self, n: int = 1) -> int:
        if n < 1:
            raise ValueError(f"cannot reserve {n} ids")
        with self._thread_lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                unique = self._lock.acquire()
            except OSError as exc:
                raise StoreError(f"cannot lock GC3Pie's id counter {self.path}: {exc}") from exc
            try:
                last = self._read_last()
                first = last + 1
                if self.floor is not None:
                    first = max(first, self.floor())
                self._write_last(first + n - 1)
            finally:
                self._lock.release(unique)
        return first

    def _read_last(self) -> int:
        try:
            head = self.path.read_text()[:8]
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot read GC3Pie's id counter {self.path}: {exc}") from exc
        try:
            return int(head or "0", 16)
        except ValueError:
            raise StoreError(f"GC3Pie's id counter {self.path} does not start with a hexadecimal "
                             f"number: {head!r}") from None

    def _write_last(self, last: int) -> None:
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise StoreError(f"GC3Pie's id counter {self.path} is not writable; GC3Pie could "
                             "not take ids from it either")
        # Written whole to a temporary file and renamed: a crash leaves the old
        # or the new number, never a torn one (GC3Pie overwrites in place).
        try:
            replace_file(self.path, f"{last:08x}{_TRAILER}")
        except OSError as exc:
            raise StoreError(f"cannot write GC3Pie's id counter {self.path}: {exc}") from exc
