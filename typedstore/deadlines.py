"""Client-side read deadlines: a server that stops answering ends in an error, not a hang.

A server's own timeouts (PostgreSQL ``statement_timeout`` and ``lock_timeout``)
are enforced by the server: a server that is stopped (``SIGSTOP``, a frozen
virtual machine, a partition behind which the peer's kernel still
acknowledges packets) never answers and never times out, and TCP keepalives
do not fire while the peer's kernel answers them. PyMySQL bounds every read
with its ``read_timeout`` (a socket timeout); psycopg 3 waits without limit.

So PostgreSQL connections are made of :func:`postgresql_connection_class`, a
psycopg ``Connection`` whose ``wait`` (the one method through which psycopg
waits for the server: statements, fetches, commits, pings) runs under a
deadline of the store's ``read_timeout``. :class:`Watchdog`, one daemon thread
per process, shuts the socket of a connection past its deadline down
(``shutdown(SHUT_RDWR)`` on a duplicate of its descriptor): the driver's
blocked read returns at once with an end of file, the connection is closed,
and :class:`NoAnswer` (a psycopg ``OperationalError`` marked with
:data:`NO_ANSWER`) tells the store, which reports a
:class:`~typedstore.errors.ReadTimeout`.

Cost on the hot path: a counter step, a clock read and one dict insert and
delete per wait; no lock, no wake-up of the watchdog thread. The thread wakes
every :data:`TICK` seconds once the process has armed a deadline, so a
deadline fires up to :data:`TICK` seconds late.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
from time import monotonic, sleep
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between two checks of the armed deadlines.
TICK = 0.25


class Watchdog:
    """Deadlines on sockets; the process's one instance is :data:`WATCHDOG`.

    ``arm(sock, seconds)`` returns a token; ``disarm(token)`` returns True if
    the deadline expired meanwhile (the socket was shut down: the connection
    is unusable and must be dropped, even if its statement succeeded).
    Thread-safe without a lock: each token's entry is removed exactly once,
    by whichever of ``disarm`` and the watchdog thread pops it first (dict
    operations are atomic in CPython).
    """

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, socket.socket, str]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def arm(self, sock: socket.socket, seconds: float, what: str = "") -> int:
        """Shut ``sock`` down if :meth:`disarm` is not called within ``seconds``."""
        token = next(self._tokens)
        self._armed[token] = (monotonic() + seconds, sock, what)
        if self._thread is None:
            self._start()
        return token

    def disarm(self, token: int) -> bool:
        """End the deadline of ``token``; True if it had expired (socket shut down)."""
        return self._armed.pop(token, None) is None

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="typedstore-deadlines",
                                          daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            sleep(TICK)
            self.expire(monotonic())

    def expire(self, now: float) -> int:
        """Shut down the sockets whose deadline is before ``now``; return how many."""
        fired = 0
        for token, (at, sock, what) in list(self._armed.items()):
            if at > now or self._armed.pop(token, None) is None:
                continue
            fired += 1
            # The store reports it (ReadTimeout, logged once there).
            log.debug("the server did not answer %s in time; closing its connection",
                      what or "a statement")
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed meanwhile: the statement ended after all
                log.debug("shutting down a connection past its deadline", exc_info=True)
        return fired

    def _after_fork(self) -> None:
        """In a forked child: the thread is gone and the entries are the parent's."""
        self._armed = {}
        self._thread = None
        self._start_lock = threading.Lock()


#: The process's watchdog.
WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._after_fork)


def socket_of(fd: int) -> socket.socket | None:
    """A socket object on a duplicate of descriptor ``fd`` (for shutting the
    connection down without racing the driver closing and reusing ``fd``);
    None if it cannot be made. The caller closes it with the connection."""
    if fd < 0:
        return None
    try:
        return socket.socket(fileno=os.dup(fd))
    except OSError:
        log.debug("no socket object for descriptor %d", fd, exc_info=True)
        return None


#: Attribute set (True) on the error of a statement whose deadline expired.
NO_ANSWER = "typedstore_no_answer"

_CLASSES: dict[str, Any] = {}


def postgresql_connection_class() -> Any:
    """A subclass of ``psycopg.Connection`` whose waits for the server end after
    its ``typedstore_read_timeout`` seconds (class default: none; the engine
    sets it on each connection) with :class:`NoAnswer`, the connection closed."""
    made = _CLASSES.get("postgresql")
    if made is not None:
        return made
    import psycopg

    class NoAnswer(psycopg.OperationalError):
        """The server did not answer within the read timeout; the connection is closed."""

    setattr(NoAnswer, NO_ANSWER, True)

    class DeadlineConnection(psycopg.Connection):
        typedstore_read_timeout: float | None = None
        typedstore_label = ""
        _typedstore_sock: socket.socket | None = None

        def wait(self, *args: Any, **kwargs: Any) -> Any:
            seconds = self.typedstore_read_timeout
            if seconds is None:
                return super().wait(*args, **kwargs)
            sock = self._typedstore_sock
            if sock is None:
                sock = self._typedstore_sock = socket_of(self.pgconn.socket)
                if sock is None:
                    return super().wait(*args, **kwargs)
            token = WATCHDOG.arm(sock, seconds, self.typedstore_label)
            try:
                result = super().wait(*args, **kwargs)
            except BaseException as exc:
                if WATCHDOG.disarm(token):
                    raise self._no_answer(seconds) from exc
                raise
            if WATCHDOG.disarm(token):  # answered as the deadline fired: the socket is shut
                raise self._no_answer(seconds)
            return result

        def _no_answer(self, seconds: float) -> NoAnswer:
            self._typedstore_close_sock()
            try:
                self.pgconn.finish()  # closed: psycopg and SQLAlchemy see it so
            except Exception:
                log.debug("closing a connection past its deadline", exc_info=True)
            return NoAnswer(f"the server did not answer within {seconds:g} s "
                            "(typedstore read_timeout); the connection was closed")

        def _typedstore_close_sock(self) -> None:
            sock, self._typedstore_sock = self._typedstore_sock, None
            if sock is not None:
                sock.close()

        def close(self) -> None:
            self._typedstore_close_sock()
            super().close()

    DeadlineConnection.NoAnswer = NoAnswer  # type: ignore[attr-defined]
    _CLASSES["postgresql"] = DeadlineConnection
    return DeadlineConnection
