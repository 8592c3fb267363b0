"""A loopback TCP proxy in front of a real database server that can be frozen.

Frozen, it keeps every connection open and passes nothing in either
direction, as a stopped server (SIGSTOP, a frozen virtual machine) whose
kernel still holds the connection: the client's statement is sent into the
void and no answer, error or end of file ever comes back. Thawed, it passes
bytes again; connections accepted while frozen wait for the thaw.
"""

from __future__ import annotations

import selectors
import socket
import threading


class FreezableProxy:
    """Forward ``127.0.0.1:port`` to ``(host, upstream_port)``; :meth:`freeze`, :meth:`thaw`."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.upstream = (host, upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.running = threading.Event()  # set: bytes pass
        self.running.set()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def freeze(self) -> None:
        self.running.clear()

    def thaw(self) -> None:
        self.running.set()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._pump, args=(client,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket) -> None:
        while not self.running.wait(0.1):  # accepted while frozen: wait for the thaw
            if self.stopped.is_set():
                client.close()
                return
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        with self.lock:
            self.sockets += [client, server]
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(server, selectors.EVENT_READ)
            while not self.stopped.is_set():
                if not self.running.wait(0.1):
                    continue  # frozen: read nothing, pass nothing
                for key, _ in selector.select(0.1):
                    if not self.running.is_set():
                        break
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                        if not data:
                            raise ConnectionError("closed")
                        peers[source].sendall(data)
                    except OSError:
                        for sock in (client, server):
                            sock.close()
                        return
        for sock in (client, server):
            sock.close()

    def close(self) -> None:
        self.stopped.set()
        self.running.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(5)
        with self.lock:
            for sock in self.sockets:
                sock.close()
