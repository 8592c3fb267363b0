"""A connected server that stops answering (issue 10, item 6).

The real PostgreSQL and MariaDB servers sit behind a loopback proxy
(:mod:`tests.concurrency.proxy`) that the tests freeze: the store's
connection stays open and no answer ever comes, as with a stopped server.
Each operation must end in :class:`ReadTimeout` after the store's
``read_timeout`` -- saves, loads, queries, commits, other threads' work --
and the store must work again once the server answers. The bound the tests
check is a generous join timeout on the worker thread: an operation that
hangs fails them; nothing asserts how fast an operation ran.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from typedstore import (
    ConnectionLostError,
    LockTimeout,
    Persistable,
    ReadTimeout,
    ServerTimeout,
    Store,
    StoreError,
    make_store,
)
from typedstore.deadlines import TICK

from .proxy import FreezableProxy

READ_TIMEOUT = 2.0
#: Longest an operation may take before the test calls it a hang: the read
#: timeout, a reconnection's connect timeout, the watchdog's tick, and slack
#: for a loaded machine.
HANG = 60.0


class Job(Persistable):
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture(params=["postgresql", "mysql"])
def proxied(request: pytest.FixtureRequest) -> Iterator[tuple[FreezableProxy, str]]:
    base = request.getfixturevalue("pg_base_url" if request.param == "postgresql"
                                   else "mysql_base_url")
    url = sa.make_url(base)
    proxy = FreezableProxy(url.host or "127.0.0.1", url.port or
                           (5432 if request.param == "postgresql" else 3306))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    table = f"silent_{uuid.uuid4().hex[:10]}"
    yield proxy, f"{through}#table={table}"
    proxy.close()


def finish(fn: Callable[[], Any]) -> BaseException | Any:
    """Run ``fn`` in a thread; return its result or its exception. Fails the
    test if it is still running after :data:`HANG` seconds."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # the outcome under test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"{fn} still blocked after {HANG} s: a hang"
    return outcome[0]


def opened(url: str) -> Store:
    return make_store(url, read_timeout=READ_TIMEOUT, lock_timeout=1, connect_timeout=2)


@pytest.mark.timeout(300)
def test_operations_end_in_read_timeout(proxied: tuple[FreezableProxy, str]) -> None:
    proxy, url = proxied
    store = opened(url)
    other = opened(url)  # a second store: its identity map does not hold ``kept``
    try:
        kept = store.save(Job("before"))
        assert store.load(kept).name == "before"
        assert other.list() == [kept]
        proxy.freeze()

        new = Job("new")
        error = finish(lambda: store.save(new))
        assert isinstance(error, ReadTimeout), repr(error)
        assert isinstance(error, ServerTimeout) and isinstance(error, ConnectionLostError)
        assert error.waited == READ_TIMEOUT and f"read_timeout={READ_TIMEOUT:g} s" in str(error)
        assert "127.0.0.1" in error.store
        assert error.committed is None  # an insert sent: it may have been written

        error = finish(lambda: other.load(kept))
        assert isinstance(error, ReadTimeout) and error.committed is False, repr(error)

        error = finish(lambda: list(store.query()))
        assert isinstance(error, StoreError) and isinstance(error, ServerTimeout), repr(error)

        proxy.thaw()
        again = finish(lambda: store.save(Job("after")))
        assert not isinstance(again, BaseException), repr(again)
        assert store.load(again).name == "after"
        assert store.load(kept).name == "before"
        assert {str(i) for i in store.list()} >= {str(kept), str(again)}
        assert other.load(kept).name == "before"
    finally:
        proxy.thaw()
        store.close()
        other.close()


@pytest.mark.timeout(300)
def test_transaction_on_a_silent_server_writes_nothing(
        proxied: tuple[FreezableProxy, str]) -> None:
    proxy, url = proxied
    store = opened(url)
    try:
        first = store.save(Job("first"))
        job = Job("in the transaction")

        def transaction() -> None:
            with store.transaction():
                store.save(job)
                proxy.freeze()
                store.replace(first, Job("changed"))

        error = finish(transaction)
        assert isinstance(error, ReadTimeout), repr(error)
        assert error.committed is False and "nothing" in str(error)
        proxy.thaw()
        reader = opened(url)
        try:
            assert reader.load(first).name == "first"
            assert [str(i) for i in reader.list()] == [str(first)]
        finally:
            reader.close()
        assert store.load(first).name == "first"
    finally:
        proxy.thaw()
        store.close()


@pytest.mark.timeout(300)
def test_other_threads_are_not_held_for_good(proxied: tuple[FreezableProxy, str]) -> None:
    """Four threads working on one store when the server stops: each ends in
    a typedstore error within the timeouts, and all work after the thaw."""
    proxy, url = proxied
    store = opened(url)
    try:
        ids = [store.save(Job(f"job {n}")) for n in range(4)]
        proxy.freeze()
        outcomes: list[Any] = []
        lock = threading.Lock()

        def work(n: int) -> None:
            try:
                store.replace(ids[n], Job(f"job {n} again"))
                result: Any = "done"
            except BaseException as exc:  # the outcome under test
                result = exc
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(4 * HANG)
        assert not any(thread.is_alive() for thread in threads), "a thread is still blocked"
        assert len(outcomes) == 4
        # The thread on the silent server: ReadTimeout; the others waited for
        # the store object it held: LockTimeout after lock_timeout (or, had
        # they got it, a timeout of their own).
        assert all(isinstance(o, (ServerTimeout, LockTimeout)) for o in outcomes), outcomes
        assert any(isinstance(o, ServerTimeout) for o in outcomes), outcomes
        proxy.thaw()
        for n in range(4):
            assert store.load(ids[n]).name.startswith(f"job {n}")
        store.replace(ids[0], Job("job 0 last"))
        assert store.load(ids[0]).name == "job 0 last"
    finally:
        proxy.thaw()
        store.close()


def test_watchdog_fires_late_by_at_most_a_tick() -> None:
    """The watchdog shuts a socket down once its deadline passed, never before."""
    import socket

    from typedstore.deadlines import Watchdog

    dog = Watchdog()
    left, right = socket.socketpair()
    try:
        token = dog.arm(left, 100.0)
        assert dog.expire(0.0) == 0
        assert not dog.disarm(token)  # not expired
        token = dog.arm(left, 0.0)
        import time
        assert dog.expire(time.monotonic() + TICK) == 1
        assert dog.disarm(token)  # expired
        assert left.recv(1) == b""  # shut down: an end of file at once
    finally:
        left.close()
        right.close()
