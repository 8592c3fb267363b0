"""Temporary files of the file store's writers, named by writer so leftovers can go.

A commit writes each record to a temporary file and renames it over the record.
A writer killed between the two, or one whose write failed, leaves its
temporary file behind; on a full disk such leftovers keep the disk full and
every later save fails. Each temporary file is therefore named after its
writer: host name, PID namespace and process id. When a store opens (and after
a write fails) :func:`sweep` removes the temporary files whose writer is gone:

* on this host and in this PID namespace, a writer whose process no longer
  exists (``kill(pid, 0)``) is gone, whatever the file's age;
* another host's or namespace's writer cannot be asked: its files go once they
  are older than :data:`~typedstore.defaults.STALE_TEMP_AGE` (a live writer
  renames its file within a commit, which never takes that long);
* files named by older typedstore releases (no writer host) go by age too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from pathlib import Path

from .defaults import STALE_TEMP_AGE

log = logging.getLogger(__name__)

SUFFIX = ".tmp"


def _namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    return "".join(ch for ch in link if ch.isdigit()) or "0"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


#: This process's writer tag: ``host~namespace~pid`` (recomputed after a fork).
_tag = ""


def writer_tag() -> str:
    """The tag naming this process as a writer (host, PID namespace, pid)."""
    global _tag
    pid = os.getpid()
    if not _tag.endswith(f"~{pid}"):
        _tag = f"{_host()}~{_namespace()}~{pid}"
    return _tag


def temp_name(id_: object, serial: int) -> str:
    """The dot-named temporary file of record ``id_`` written by this process."""
    return f".{id_}.{writer_tag()}.{serial}{SUFFIX}"


def _writer(name: str) -> tuple[str, str, int] | None:
    """``(host, namespace, pid)`` of a temporary file named by :func:`temp_name`."""
    parts = name[: -len(SUFFIX)].split(".")
    if len(parts) < 3:
        return None
    host, _, rest = parts[-2].partition("~")
    namespace, _, pid = rest.partition("~")
    if not host or not namespace or not pid.isdigit():
        return None
    return host, namespace, int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def sweep(directory: str, now: float | None = None) -> list[str]:
    """Remove the temporary files in ``directory`` whose writer is gone (see the
    module's docstring); return their names. Never raises for a file that
    vanished meanwhile or cannot be removed (logged)."""
    now = time.time() if now is None else now
    mine = writer_tag().rsplit("~", 1)[0]
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError as exc:
        log.warning("cannot list %s for leftover temporary files: %s", directory, exc)
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(SUFFIX)):
            continue
        path = os.path.join(directory, name)
        writer = _writer(name)
        try:
            if writer is not None and f"{writer[0]}~{writer[1]}" == mine:
                if writer[2] == os.getpid() or _alive(writer[2]):
                    continue
            elif now - os.stat(path).st_mtime < STALE_TEMP_AGE:
                continue
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove the leftover temporary file %s: %s", path, exc)
            continue
        removed.append(name)
    if removed:
        log.info("removed %d temporary file(s) of writers that are gone from %s: %s",
                 len(removed), directory, ", ".join(sorted(removed)[:5]))
    return removed


def replace_file(path: str | os.PathLike[str], text: str) -> None:
    """Make ``path`` hold ``text``, whole or not at all: written to
    ``.NAME.PID.tmp`` beside it, fsynced and renamed over it (a crash leaves
    the old contents or the new, never a torn file). On failure (a full disk,
    a quota) the temporary file is removed and the OSError raised."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}{SUFFIX}")
    try:
        with open(tmp, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
