"""A TCP proxy for storage outages in tests: 127.0.0.1:<free port> forwards to a target port (moto_server's),
until `down(seconds)` cuts every open connection and refuses every new one (accepted, then reset at once)
for that long, as a network partition or a restarting S3 endpoint does. Threads only; no mocks: the sweep
talks HTTP to moto_server through it.

    with Proxy(moto_port) as proxy:
        env["AWS_ENDPOINT_URL"] = proxy.url
        ...
        proxy.down(60)      # returns at once; back by itself after 60 s
        proxy.up()          # or earlier
"""
from __future__ import annotations

import socket
import struct
import threading
import time

from tests.fixtures import free_port


class Proxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.refused = 0  # connections reset while down (the test can check the outage was felt)
        self._listener = socket.create_server((host, self.port), backlog=128)
        self._listener.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._thread.start()

    # --- control ---
    def down(self, seconds: float) -> None:
        """Cut every open connection now and refuse new ones for `seconds` (returns at once)."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            victims, self._open = list(self._open), set()
        for sock in victims:
            _reset(sock)

    def up(self) -> None:
        with self._lock:
            self._down_until = 0.0

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.down(0)

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- forwarding ---
    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.is_down:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True, name="proxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
