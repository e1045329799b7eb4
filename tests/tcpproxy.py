"""A TCP proxy on a loopback port, for fault-injection tests and the bytes benchmark.

Put it between a client and the broker to count the application bytes each way, to see
what a client sent, and to break the link on purpose: cut every connection, refuse new ones
for a while, or cut once a given number of bytes has gone up (to cut mid-batch). With
`nat_idle`, it also drops idle connections silently, as a mobile carrier's NAT does.

    with TcpProxy(broker.port) as proxy:
        client.connect("127.0.0.1", proxy.port)
        ...
        proxy.cut()

One thread serves every connection over non-blocking sockets. Leaving the `with` block (or
`close()`) closes every socket and joins that thread.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 5.0  # to the target; it is expected on a loopback or LAN address
TICK = 0.05  # with nat_idle: how often the clock is read when nothing arrives

_Command = tuple[Callable[[], None], threading.Event]  # what to run, and set when it has run


class _Link:
    """One proxied connection: the client's socket, ours to the target, and for each the
    bytes still to be written to it."""

    def __init__(self, client: socket.socket, server: socket.socket, now: float):
        self.client = client
        self.server = server
        self.peer = {client: server, server: client}
        self.outgoing = {client: bytearray(), server: bytearray()}
        self.ended: set[socket.socket] = set()  # sockets whose side sent end-of-stream
        self.shut: set[socket.socket] = set()  # sockets we have passed that end on to
        self.open = True
        self.active_at = now  # when bytes last came from either side, by the proxy's clock
        self.dropped = False  # by the NAT: nothing is forwarded any more


class TcpProxy:
    """Forwards connections to 127.0.0.1 on `port` to (`target_host`, `target_port`).

    `on_up(data)` is called, on the proxy's thread, with each chunk as it is written to the
    target, so `b"".join` of the chunks is exactly what clients sent.

    With `nat_idle`, a connection that carried no bytes either way for `nat_idle` seconds by
    `clock` (read every TICK, so it may be a test's clock that jumps) is dropped the way a
    carrier-grade NAT drops it: silently. The proxy forwards nothing more either way and
    sends neither FIN nor RST to either side; it reads and discards what either side sends
    afterwards (counted in `bytes_dropped`: a SIM bills what was sent all the same), and
    closes its two sockets only when the client closes its side, or at cut() or close().
    Unlike a real NAT, the proxy's kernel still acknowledges what the client sends, so the
    client sees no retransmissions and no timeout of its writes: only silence.
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        on_up: Callable[[bytes], None] | None = None,
        nat_idle: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if nat_idle is not None and nat_idle <= 0:
            raise ValueError(f"nat_idle must be positive seconds, not {nat_idle}")
        self.target = (target_host, target_port)
        self.on_up = on_up
        self.nat_idle = nat_idle
        self.clock = clock
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._links: list[_Link] = []
        self._lock = threading.Lock()  # counters, and the command queue against shutdown
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._bytes_up = self._bytes_down = self._connections = 0
        self._nat_drops = self._bytes_dropped = self._bytes_dropped_up = 0
        self._budget: int | None = None  # bytes up left before cut_after() cuts
        self._blocked = False
        self._running = True
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"tcpproxy-{self.port}")
        self._thread.start()

    # --- what tests read ---

    @property
    def bytes_up(self) -> int:
        """Bytes written to the target (client to server), over every connection so far."""
        with self._lock:
            return self._bytes_up

    @property
    def bytes_down(self) -> int:
        """Bytes written to clients (server to client), over every connection so far."""
        with self._lock:
            return self._bytes_down

    @property
    def connections(self) -> int:
        """Connections accepted so far, counting those refused while blocked."""
        with self._lock:
            return self._connections

    @property
    def links_open(self) -> int:
        """Connections open now, through the proxy: those dropped by the NAT included."""
        with self._lock:
            return len(self._links)

    @property
    def nat_drops(self) -> int:
        """Connections dropped for idleness (see `nat_idle`), so far."""
        with self._lock:
            return self._nat_drops

    @property
    def bytes_dropped(self) -> int:
        """Bytes discarded because their connection was dropped, both ways: what either side
        sent after the drop, and what was waiting to be forwarded when it came."""
        with self._lock:
            return self._bytes_dropped

    @property
    def bytes_dropped_up(self) -> int:
        """Of `bytes_dropped`, those the client sent."""
        with self._lock:
            return self._bytes_dropped_up

    # --- what tests do; each returns once the proxy's thread has done it ---

    def cut(self) -> None:
        """Close every open connection, both sides, with no goodbye: like a dropped link."""
        self._call(self._cut_all)

    def block(self) -> None:
        """Cut every connection, then close each new one as soon as it is accepted."""

        def block() -> None:
            self._blocked = True
            self._cut_all()

        self._call(block)

    def unblock(self) -> None:
        """Forward new connections again."""

        def unblock() -> None:
            self._blocked = False

        self._call(unblock)

    def cut_after(self, n_bytes_up: int) -> None:
        """Cut every connection once `n_bytes_up` more bytes have been written to the target
        (the first of them still gets through: exactly that many)."""
        if n_bytes_up < 1:
            raise ValueError("cut_after() needs at least one byte; use cut() to cut now")

        def arm() -> None:
            self._budget = n_bytes_up

        self._call(arm)

    def close(self) -> None:
        """Close every connection and the listening port, and join the proxy's thread."""
        if self._thread.is_alive():

            def stop() -> None:
                self._running = False

            self._call(stop)
            self._thread.join()
        elif self._error is not None:
            raise RuntimeError("the proxy's thread failed") from self._error

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, command: Callable[[], None]) -> None:
        done = threading.Event()
        with self._lock:
            if not self._running:
                raise RuntimeError("the proxy is closed") from self._error
            self._commands.put((command, done))
        self._wake_w.send(b"!")
        done.wait()
        if self._error is not None:
            raise RuntimeError("the proxy's thread failed") from self._error

    # --- the proxy's thread ---

    def _serve(self) -> None:
        try:
            tick = None if self.nat_idle is None else TICK
            while self._running:
                for key, events in self._selector.select(tick):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._run_commands()
                    elif key.data.dropped:
                        self._discard(key.data, key.fileobj)
                    else:
                        self._pump(key.data, key.fileobj, events)
                if self.nat_idle is not None and self._running:
                    self._drop_idle()
        except BaseException as exc:
            self._error = exc  # re-raised to the test by the next call or close()
        finally:
            with self._lock:
                self._running = False
            self._cut_all()
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()
            self._selector.close()
            while not self._commands.empty():
                self._commands.get()[1].set()

    def _run_commands(self) -> None:
        self._wake_r.recv(CHUNK)
        while not self._commands.empty():
            command, done = self._commands.get()
            try:
                command()
            finally:
                done.set()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return  # drained by _cut_all() in the meantime
        with self._lock:
            self._connections += 1
        if self._blocked:
            _close(client)
            return
        try:
            server = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError:
            _close(client)  # the target is down: so is the proxied port
            return
        link = _Link(client, server, self.clock())
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._links.append(link)
        self._settle(link)

    def _pump(self, link: _Link, sock: socket.socket, events: int) -> None:
        """Read what `sock` has for its peer and write what is waiting for `sock`."""
        try:
            if link.open and events & selectors.EVENT_READ:
                if self.nat_idle is not None:
                    # Bytes for a mapping that was idle too long find it gone, whether or
                    # not a tick has looked since the clock last moved.
                    self._drop_idle()
                    if link.dropped:
                        self._discard(link, sock)
                        return
                data = sock.recv(CHUNK)
                if data:
                    link.active_at = self.clock()
                    link.outgoing[link.peer[sock]] += data
                    self._write(link, link.peer[sock])
                else:
                    link.ended.add(sock)
            if link.open and events & selectors.EVENT_WRITE:
                self._write(link, sock)
            if link.open:
                self._settle(link)
        except OSError:  # reset by either side, or a write after it went away
            self._close_link(link)

    def _write(self, link: _Link, sock: socket.socket) -> None:
        """Write to `sock` what its buffer holds, up to the cut_after() budget if it goes up."""
        pending = link.outgoing[sock]
        up = sock is link.server
        limit = len(pending) if self._budget is None or not up else min(len(pending), self._budget)
        if not limit:
            return
        with self._lock:  # held across send: a reader who saw the bytes sees them counted
            try:
                sent = sock.send(pending[:limit])
            except BlockingIOError:
                return  # its buffer is full: _settle() waits for it to be writable
            if up:
                self._bytes_up += sent
            else:
                self._bytes_down += sent
        if up and self.on_up is not None:
            self.on_up(bytes(pending[:sent]))
        del pending[:sent]
        if up and self._budget is not None:
            self._budget -= sent
            if not self._budget:
                self._budget = None
                self._cut_all()

    def _settle(self, link: _Link) -> None:
        """Pass each end-of-stream on once the data before it is out, close the link when
        both sides have ended, and watch each socket for what it can do next."""
        for sock in (link.client, link.server):
            peer = link.peer[sock]
            if sock in link.ended and not link.outgoing[peer] and peer not in link.shut:
                peer.shutdown(socket.SHUT_WR)
                link.shut.add(peer)
        if len(link.shut) == 2:
            self._close_link(link)
            return
        for sock in (link.client, link.server):
            events = 0
            if sock not in link.ended and not link.outgoing[link.peer[sock]]:
                events |= selectors.EVENT_READ  # read no more until the peer took the last
            if link.outgoing[sock]:
                events |= selectors.EVENT_WRITE
            self._watch(sock, events, link)

    def _watch(self, sock: socket.socket, events: int, link: _Link) -> None:
        key = self._selector.get_map().get(sock)
        if key is None and events:
            self._selector.register(sock, events, link)
        elif key is not None and not events:
            self._selector.unregister(sock)
        elif key is not None and key.events != events:
            self._selector.modify(sock, events, link)

    def _cut_all(self) -> None:
        """Close every link, and every connection still waiting in the listen backlog."""
        for link in list(self._links):
            self._close_link(link)
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                return
            with self._lock:
                self._connections += 1
            _close(client)

    def _drop_idle(self) -> None:
        """Drop, silently, each link idle for nat_idle seconds by the clock."""
        now = self.clock()
        for link in self._links:
            if link.dropped or now - link.active_at < self.nat_idle:
                continue
            link.dropped = True
            with self._lock:
                self._nat_drops += 1
                # Read from one side, never written to the other: lost on the way.
                self._bytes_dropped += len(link.outgoing[link.client])
                self._bytes_dropped += len(link.outgoing[link.server])
                self._bytes_dropped_up += len(link.outgoing[link.server])
            for sock in (link.client, link.server):
                link.outgoing[sock].clear()
                # Read what either side still sends, to discard it; one that ended has
                # nothing more to send.
                events = 0 if sock in link.ended else selectors.EVENT_READ
                self._watch(sock, events, link)

    def _discard(self, link: _Link, sock: socket.socket) -> None:
        """Read and count what `sock` sent after its link was dropped. The client closing
        its side closes the link; the target closing its side, or resetting, is not passed
        on (the NAT no longer knows the connection) and leaves the client's side open."""
        if not link.open:
            return  # closed by an earlier event of the same select()
        try:
            data = sock.recv(CHUNK)
        except OSError:  # reset: the client's ends the link, the target's is its end
            data = b""
        if data:
            with self._lock:
                self._bytes_dropped += len(data)
                if sock is link.client:
                    self._bytes_dropped_up += len(data)
        elif sock is link.client:
            self._close_link(link)
        else:
            link.ended.add(sock)
            self._watch(sock, 0, link)

    def _close_link(self, link: _Link) -> None:
        link.open = False
        for sock in (link.client, link.server):
            if sock in self._selector.get_map():
                self._selector.unregister(sock)
            _close(sock)
        with self._lock:
            if link in self._links:
                self._links.remove(link)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already reset: closing is all that is left
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
