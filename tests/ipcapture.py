"""Count the IP bytes of the TCP connections to one loopback port, as a SIM link bills them.

A packet capture on "lo" (a raw AF_PACKET socket: no extra package, but it needs
CAP_NET_RAW, so root) sees every IP packet of the connections to or from `port`: IP and TCP
headers, handshakes, pure ACKs, FINs and RSTs, and TLS records as the payload they are.
Put a tests/tcpproxy.py TcpProxy between the client and the server and capture the proxy's
port, so only the client<->proxy leg is counted:

    with TcpProxy(broker.port) as proxy, Capture(proxy.port) as capture:
        ... the client connects to proxy.port, works, disconnects ...
        capture.settle()
        print(capture.up, capture.down, capture.bytes)

What counts as what:

- Each packet on loopback is seen twice, once leaving and once arriving; only the arriving
  copy is counted (PACKET_OUTGOING is skipped).
- Loopback's MTU is 64 KiB and GSO hands a large write over as one packet, while a SIM link
  carries at most `mtu` (1500) bytes in a packet. So each captured TCP packet is counted as
  the packets a link of `mtu` would carry: its payload split into ceil(payload / mss)
  packets, mss = mtu - that packet's IP header - its TCP header (options included), each
  charged that packet's headers (IP 20 or 40, TCP 20 + options: 32 with timestamps). A
  packet with no payload, or no more than mss, counts as captured, so a connection whose
  packets all fit in `mtu` counts exactly the bytes captured (`raw`). This is what the
  kernel itself does when the peer's MSS is the link's: a client that sets TCP_MAXSEG to
  mtu - 40 before connecting sends exactly the packets counted (tests/test_ipcapture.py).
- `up` is towards `port` (client to proxy), `down` from it; `bytes` is both.
- Not counted: anything below IP (a SIM link has no Ethernet header), IP fragments, and
  IPv6 packets with extension headers (loopback TCP has none), and packets sent before the
  capture started.

A thread reads the packets; a kernel filter passes it only TCP packets of `port`, and
it reads their headers only. `dropped` counts packets the kernel dropped because the reader
fell behind: if it is not 0 the counts are low.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
ETHERNET_HEADER = 14  # loopback frames carry an all-zero Ethernet header
HEADERS_READ = 256  # Ethernet + IPv6 + the longest TCP header, with room to spare
RECEIVE_BUFFER = 32 * 1024 * 1024  # a burst of 64 KiB GSO packets queues a lot
TICK = 0.05  # how often the reader looks whether close() was called

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10


@dataclasses.dataclass(frozen=True)
class Totals:
    """What a Capture has counted; `later - earlier` is what was counted in between."""

    bytes: int = 0  # IP bytes both ways, split to the link's MTU
    up: int = 0  # of those, towards the port
    down: int = 0  # from the port
    packets: int = 0  # IP packets both ways, split to the link's MTU
    connections: int = 0  # SYNs towards the port (connection attempts)
    resets: int = 0  # RSTs either way
    raw: int = 0  # IP bytes as captured, not split
    dropped: int = 0  # packets the kernel dropped before the reader read them

    def __sub__(self, other: Totals) -> Totals:
        return Totals(
            *(getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self))
        )


@dataclasses.dataclass
class _Flow:
    """One TCP connection's closing, as seen in its packets. Endpoints are (address, port)."""

    client: tuple[str, int]
    server: tuple[str, int]
    confirmed: bool = False  # seen more than bare ACKs (those may trail a closed flow)
    reset: bool = False
    fin_end: dict = dataclasses.field(default_factory=dict)  # endpoint -> seq after its FIN
    fin_acked: set = dataclasses.field(default_factory=set)  # endpoints whose FIN was acked

    @property
    def ended(self) -> bool:
        return self.reset or len(self.fin_acked) == 2

    def describe(self) -> str:
        state = ", ".join(f"FIN from {_name(e)}" for e in self.fin_end) or "no FIN"
        if self.fin_acked:
            state += ", acked: " + ", ".join(_name(e) for e in self.fin_acked)
        return f"{_name(self.client)} <-> {_name(self.server)} ({state})"


class Capture:
    """Counts the IP bytes of TCP connections to or from loopback port `port`, as a link
    with `mtu` would carry them (see the module's docstring). From construction until
    close(); a context manager."""

    def __init__(self, port: int, mtu: int = 1500):
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
        if mtu < 576:
            raise ValueError(f"an MTU below 576 leaves no room for TCP: {mtu}")
        self.port = port
        self.mtu = mtu
        try:
            # No protocol until bound to "lo" with the filter on: nothing else gets queued.
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise PermissionError(
                "capturing packets on loopback needs CAP_NET_RAW: run the tests as root "
                "(e.g. with sudo)"
            ) from exc
        try:
            _attach_port_filter(self._sock, port)
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind(("lo", ETH_P_ALL))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise
        self._changed = threading.Condition()  # guards everything below; notified per read
        self._totals = Totals()
        self._flows: dict[frozenset, _Flow] = {}
        self._drains = 0  # times the reader has emptied the socket's queue
        self._running = True
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name=f"ipcapture-{port}", daemon=True)
        self._thread.start()

    # --- what tests read ---

    def snapshot(self) -> Totals:
        """Everything counted so far."""
        with self._changed:
            self._check()
            return self._totals

    bytes = property(lambda self: self.snapshot().bytes, doc="IP bytes both ways")
    up = property(lambda self: self.snapshot().up, doc="IP bytes towards the port")
    down = property(lambda self: self.snapshot().down, doc="IP bytes from the port")
    packets = property(lambda self: self.snapshot().packets, doc="IP packets both ways")
    connections = property(lambda self: self.snapshot().connections, doc="SYNs to the port")
    resets = property(lambda self: self.snapshot().resets, doc="RSTs either way")
    raw = property(lambda self: self.snapshot().raw, doc="IP bytes as captured, unsplit")
    dropped = property(lambda self: self.snapshot().dropped, doc="packets the reader missed")

    def open_flows(self) -> list[str]:
        """The connections seen that have not ended, described."""
        with self._changed:
            return [f.describe() for f in self._flows.values() if f.confirmed and not f.ended]

    # --- what tests wait for ---

    def sync(self, timeout: float = 5.0) -> Totals:
        """Wait until every packet queued for the capture when called has been counted."""
        with self._changed:
            start = self._drains
            # The drain under way may have begun before the call: wait for one begun after.
            self._wait(lambda: self._drains >= start + 2, timeout, "the capture to catch up")
            return self._totals

    def wait_for(self, predicate: Callable[[Totals], object], timeout: float = 10.0) -> Totals:
        """Wait until `predicate(totals)` is true; return those totals. TimeoutError if not."""
        with self._changed:
            self._wait(lambda: predicate(self._totals), timeout, f"{predicate}")
            return self._totals

    def settle(self, timeout: float = 10.0) -> Totals:
        """Wait until every connection seen has ended, by a RST or by a FIN each way with the
        last one acknowledged, and return the totals. TimeoutError naming those still open."""
        self.sync(timeout)
        with self._changed:
            try:
                self._wait(lambda: not self._open(), timeout, "")
            except TimeoutError:
                flows = "; ".join(f.describe() for f in self._open())
                raise TimeoutError(
                    f"connections to port {self.port} still open after {timeout}s: {flows}"
                ) from None
            return self._totals

    def close(self) -> None:
        """Stop capturing and join the reader."""
        with self._changed:
            self._running = False
        self._thread.join()
        with self._changed:
            self._check()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> list[_Flow]:
        return [f for f in self._flows.values() if f.confirmed and not f.ended]

    def _wait(self, done: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self._check()
            if not self._running:
                raise RuntimeError("the capture is closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            self._changed.wait(left)

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError("the capture's reader failed") from self._error

    # --- the reader's thread ---

    def _read(self) -> None:
        buffer = bytearray(HEADERS_READ)
        view = memoryview(buffer)
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        try:
            while self._running:
                selector.select(TICK)
                while True:
                    try:
                        # MSG_TRUNC: the packet's whole length, though only its headers are read
                        size, address = self._sock.recvfrom_into(buffer, 0, socket.MSG_TRUNC)
                    except BlockingIOError:
                        break
                    if address[0] != "lo" or address[2] == socket.PACKET_OUTGOING:
                        continue
                    with self._changed:
                        self._count(view[: min(size, HEADERS_READ)], size)
                        self._changed.notify_all()
                dropped = _dropped(self._sock)
                with self._changed:
                    self._drains += 1
                    if dropped:
                        self._totals = dataclasses.replace(
                            self._totals, dropped=self._totals.dropped + dropped
                        )
                    self._changed.notify_all()
        except BaseException as exc:
            with self._changed:
                self._error = exc
        finally:
            selector.close()
            self._sock.close()
            with self._changed:
                self._running = False
                self._changed.notify_all()

    def _count(self, frame: memoryview, size: int) -> None:
        """Count one frame: `frame` holds its first bytes, `size` is its whole length."""
        if len(frame) < ETHERNET_HEADER + 20:
            return
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        ip = frame[ETHERNET_HEADER:]
        if ethertype == ETH_P_IP and ip[0] >> 4 == 4:
            ip_header = (ip[0] & 0x0F) * 4
            (ip_length,) = struct.unpack_from("!H", ip, 2)
            (fragment,) = struct.unpack_from("!H", ip, 6)
            if ip[9] != socket.IPPROTO_TCP or fragment & 0x3FFF:
                return
            source, destination = (
                socket.inet_ntop(socket.AF_INET, ip[12:16]),
                socket.inet_ntop(socket.AF_INET, ip[16:20]),
            )
        elif ethertype == ETH_P_IPV6 and ip[0] >> 4 == 6 and len(ip) >= 40:
            ip_header = 40
            (payload_length,) = struct.unpack_from("!H", ip, 4)
            ip_length = 40 + payload_length if payload_length else 0
            if ip[6] != socket.IPPROTO_TCP:
                return
            source = socket.inet_ntop(socket.AF_INET6, ip[8:24])
            destination = socket.inet_ntop(socket.AF_INET6, ip[24:40])
        else:
            return
        if not ip_length:  # a GSO packet beyond 64 KiB (BIG TCP): its length is the frame's
            ip_length = size - ETHERNET_HEADER
        tcp = ip[ip_header:]
        if len(tcp) < 20:
            return
        sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", tcp)
        if self.port not in (sport, dport):
            return
        tcp_header = (offset >> 4) * 4
        headers = ip_header + tcp_header
        payload = ip_length - headers
        mss = self.mtu - headers
        pieces = max(1, -(-payload // mss))
        billed = payload + pieces * headers
        up = dport == self.port
        t = self._totals
        self._totals = dataclasses.replace(
            t,
            bytes=t.bytes + billed,
            up=t.up + billed * up,
            down=t.down + billed * (not up),
            packets=t.packets + pieces,
            connections=t.connections + (up and flags & (SYN | ACK) == SYN),
            resets=t.resets + bool(flags & RST),
            raw=t.raw + ip_length,
        )
        self._follow((source, sport), (destination, dport), seq, ack, flags, payload)

    def _follow(self, sender, receiver, seq: int, ack: int, flags: int, payload: int) -> None:
        """Track the closing of the packet's connection."""
        key = frozenset((sender, receiver))
        flow = self._flows.get(key)
        if flow is None or (flow.ended and flags & SYN):  # new, or the 4-tuple used again
            client, server = (sender, receiver) if receiver[1] == self.port else (receiver, sender)
            flow = self._flows[key] = _Flow(client, server)
        if flow.ended:
            return  # what trails an end (an ACK, a RST after the FINs) changes nothing
        if flags & (SYN | FIN | RST) or payload:
            flow.confirmed = True
        if flags & RST:
            flow.reset = True
            return
        if flags & FIN:
            flow.fin_end[sender] = (seq + payload + 1 + bool(flags & SYN)) & 0xFFFFFFFF
        end = flow.fin_end.get(receiver)
        if flags & ACK and end is not None and (ack - end) & 0xFFFFFFFF < 0x80000000:
            flow.fin_acked.add(receiver)


def _name(endpoint: tuple[str, int]) -> str:
    address, port = endpoint
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _attach_port_filter(sock: socket.socket, port: int) -> None:
    """Attach a classic BPF program passing the whole of each TCP packet, IPv4 or IPv6
    (without extension headers), with source or destination port `port`: what
    `tcpdump -dd tcp port N` compiles."""
    ld_h, ld_b, ldx_msh, ld_ind_h = 0x28, 0x30, 0xB1, 0x48
    jeq, jset, ret = 0x15, 0x45, 0x06
    program = [  # (code, jump if true, jump if false, k); jumps count from the next one
        (ld_h, 0, 0, 12),  # 0: ethertype
        (jeq, 0, 6, ETH_P_IPV6),  # 1: IPv6? else to 8
        (ld_b, 0, 0, 20),  # 2: next header
        (jeq, 0, 15, socket.IPPROTO_TCP),  # 3: TCP? else drop
        (ld_h, 0, 0, 54),  # 4: source port
        (jeq, 12, 0, port),  # 5: ours? pass
        (ld_h, 0, 0, 56),  # 6: destination port
        (jeq, 10, 11, port),  # 7: ours? pass, else drop
        (jeq, 0, 10, ETH_P_IP),  # 8: IPv4? else drop
        (ld_b, 0, 0, 23),  # 9: protocol
        (jeq, 0, 8, socket.IPPROTO_TCP),  # 10: TCP? else drop
        (ld_h, 0, 0, 20),  # 11: flags and fragment offset
        (jset, 6, 0, 0x1FFF),  # 12: a later fragment: drop
        (ldx_msh, 0, 0, 14),  # 13: X = IP header length
        (ld_ind_h, 0, 0, 14),  # 14: source port
        (jeq, 2, 0, port),  # 15: ours? pass
        (ld_ind_h, 0, 0, 16),  # 16: destination port
        (jeq, 0, 1, port),  # 17: ours? pass, else drop
        (ret, 0, 0, 0x40000),  # 18: pass, whole
        (ret, 0, 0, 0),  # 19: drop
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    # struct sock_fprog; the kernel copies the program before setsockopt returns
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HP", len(program), ctypes.addressof(code))
    )


def _dropped(sock: socket.socket) -> int:
    """Packets dropped since last asked (the kernel resets the count on each reading)."""
    with contextlib.suppress(OSError):
        _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return drops
    return 0
