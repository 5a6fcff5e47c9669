"""TCP peers that stop answering, for tests of a bounded stop (any protocol).

- `silent_server()`: accepts connections and never sends a byte (a server that
  hangs before its handshake); `accepted` is set at the first connection.
- `freezing_proxy(host, port, freeze_on, after)`: forwards both ways to a real
  server until the client's `after`-th chunk containing `freeze_on` arrives;
  from then on nothing more is forwarded in either direction, and new
  connections are accepted and left silent. The connections stay open: to the
  client the peer looks alive and mute (its kernel acknowledges every byte).
  `frozen` is set when that happens; `freeze()` freezes by command.

Plain context managers, no pytest dependency; they listen on 127.0.0.1 only,
on a port the system picks, and close every socket on exit.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

_POLL_S = 0.1


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(_POLL_S)
    return sock


@dataclass
class Peer:
    port: int
    accepted: threading.Event = field(default_factory=threading.Event)
    frozen: threading.Event = field(default_factory=threading.Event)
    closing: threading.Event = field(default_factory=threading.Event)
    sockets: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def freeze(self) -> None:
        self.frozen.set()

    def keep(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)

    def close_all(self) -> None:
        self.closing.set()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()


def _accepting(
    listener: socket.socket, peer: Peer, handle: Callable[[socket.socket], None]
) -> None:
    while not peer.closing.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        peer.keep(conn)
        peer.accepted.set()
        handle(conn)


@contextlib.contextmanager
def silent_server() -> Iterator[Peer]:
    """A server that accepts every connection and never answers."""
    listener = _listener()
    peer = Peer(port=int(listener.getsockname()[1]))
    thread = threading.Thread(
        target=_accepting, args=(listener, peer, lambda conn: None), daemon=True
    )
    thread.start()
    try:
        yield peer
    finally:
        peer.close_all()
        thread.join(5)
        listener.close()


def _pump(
    source: socket.socket, sink: socket.socket, peer: Peer, trigger: tuple[bytes, int] | None
) -> None:
    """Copy source to sink until either closes, or until the peer freezes (then hold)."""
    seen = 0
    source.settimeout(_POLL_S)
    while not peer.closing.is_set() and not peer.frozen.is_set():
        try:
            chunk = source.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return
        if not chunk:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            return
        if trigger is not None and trigger[0] in chunk:
            seen += 1
            if seen >= trigger[1]:
                peer.freeze()  # this chunk is never forwarded
        if peer.frozen.is_set():
            break
        try:
            sink.sendall(chunk)
        except OSError:
            return
    peer.closing.wait()  # frozen: keep both ends open and silent


@contextlib.contextmanager
def freezing_proxy(
    host: str, port: int, freeze_on: bytes | None = None, after: int = 1
) -> Iterator[Peer]:
    """A TCP proxy to host:port that goes mute when `freeze_on` is seen (see module doc)."""
    listener = _listener()
    peer = Peer(port=int(listener.getsockname()[1]))
    trigger = (freeze_on, after) if freeze_on is not None else None
    pumps: list[threading.Thread] = []

    def handle(client: socket.socket) -> None:
        if peer.frozen.is_set():
            return  # a connection to a frozen peer: accepted, never answered
        upstream = socket.create_connection((host, port), timeout=10)
        peer.keep(upstream)
        for source, sink, rule in ((client, upstream, trigger), (upstream, client, None)):
            pump = threading.Thread(target=_pump, args=(source, sink, peer, rule), daemon=True)
            pump.start()
            pumps.append(pump)

    thread = threading.Thread(target=_accepting, args=(listener, peer, handle), daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.close_all()
        thread.join(5)
        for pump in pumps:
            pump.join(5)
        listener.close()
