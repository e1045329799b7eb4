"""The loopback packet capture, validated against the kernel's own TCP counters.

Two independent counts of one connection's client<->proxy leg:

- the capture counts the IP packets it sees on "lo" and their lengths from their IP and
  TCP headers (split to the link's MTU, tests/ipcapture.py);
- the client socket's TCP_INFO counts, inside its TCP stack, the segments it sent and
  received (segs_out, segs_in: a GSO packet counted as the MSS-sized segments it stands
  for) and the payload bytes acknowledged and received (bytes_acked, bytes_received, each
  with the sequence numbers SYN and FIN take), with no idea of IP lengths.

The IP bytes TCP_INFO implies are the payload plus, per segment, the IP header and the TCP
header with the options negotiated: timestamps on every segment, and on SYN and SYN-ACK
the MSS, SACK-permitted and window-scale options as well.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import ROOT, round_trip, wait_until
from ipcapture import Capture, Totals
from tcpproxy import TcpProxy

# Capturing needs root (CAP_NET_RAW), as the installers' test does: without it each test
# fails with Capture's message saying so, rather than skipping.

TCPI_OPT_TIMESTAMPS = 1
SYN_OPTIONS = 8  # MSS (4) + SACK-permitted and window scale (4), beside the timestamps


@dataclasses.dataclass(frozen=True)
class TcpInfo:
    timestamps: bool
    bytes_acked: int
    bytes_received: int
    segs_out: int
    segs_in: int
    bytes_sent: int


def tcp_info(sock: socket.socket) -> TcpInfo:
    """The counters of struct tcp_info this test reads (offsets as in linux/tcp.h, checked
    by bytes_sent, further on, matching what was written)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    assert len(raw) >= 208, "this kernel's tcp_info is too old for the cross-check"
    return TcpInfo(
        timestamps=bool(raw[5] & TCPI_OPT_TIMESTAMPS),
        bytes_acked=struct.unpack_from("=Q", raw, 120)[0],
        bytes_received=struct.unpack_from("=Q", raw, 128)[0],
        segs_out=struct.unpack_from("=I", raw, 136)[0],
        segs_in=struct.unpack_from("=I", raw, 140)[0],
        bytes_sent=struct.unpack_from("=Q", raw, 200)[0],
    )


def implied_ip_bytes(info: TcpInfo, ip_header: int) -> tuple[int, int]:
    """(up, down): the IP bytes a connection's TCP_INFO implies, once it has closed cleanly
    (its SYN and FIN acknowledged, the peer's FIN received)."""
    per_segment = ip_header + 20 + (12 if info.timestamps else 0)
    payload_up = info.bytes_acked - 2  # SYN and FIN each take a sequence number
    payload_down = info.bytes_received - 1  # the peer's FIN (its SYN is not counted)
    up = payload_up + info.segs_out * per_segment + SYN_OPTIONS
    down = payload_down + info.segs_in * per_segment + SYN_OPTIONS
    return up, down


def exchange(port: int, writes: list[bytes], *, family=socket.AF_INET, maxseg=None):
    """Connect to loopback `port`, echo each of `writes` through, close cleanly (each side's
    FIN acknowledged) and return the client's socket, still open, for its TCP_INFO."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    if maxseg is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, maxseg)
    sock.connect(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
    for data in writes:
        assert round_trip(sock, data) == data
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(1) == b"", "the echo did not close its side"
    return sock


def check_against_tcp_info(capture: Capture, sock: socket.socket, sent: int, ip_header: int):
    totals = capture.settle()  # the client's last ACK seen: its counters are final
    info = tcp_info(sock)
    assert info.bytes_sent == sent  # the offsets read are the right ones
    up, down = implied_ip_bytes(info, ip_header)
    assert (totals.up, totals.down) == (up, down)
    assert totals.bytes == up + down
    assert totals.packets == info.segs_out + info.segs_in
    assert (totals.connections, totals.resets, totals.dropped) == (1, 0, 0)
    return totals, info


def test_ip_bytes_match_what_tcp_info_implies(echo):
    # Each fits a 1500-byte packet; loopback's MSS (64 KiB) would send more in one.
    writes = [b"x", b"hello capture", bytes(range(200)) * 7]
    with TcpProxy(echo) as proxy, Capture(proxy.port) as capture:
        with exchange(proxy.port, writes) as sock:
            totals, _ = check_against_tcp_info(capture, sock, sum(map(len, writes)), 20)
        assert totals.raw == totals.bytes  # so the split changed nothing
        assert capture.open_flows() == []


def test_a_big_write_is_split_into_the_segments_tcp_makes_for_the_mtu(echo):
    """Loopback's GSO passes 20,000 bytes as one or two packets; a client whose MSS is a
    1500-byte link's sends (TCP_INFO says) as many segments as the capture counts."""
    data = bytes(range(250)) * 80
    with TcpProxy(echo) as proxy, Capture(proxy.port, mtu=1500) as capture:
        with exchange(proxy.port, [data], maxseg=1460) as sock:
            totals, info = check_against_tcp_info(capture, sock, len(data), 20)
        assert info.segs_out >= len(data) // 1448  # 1460 less the timestamps
        assert totals.raw <= totals.bytes


def test_ipv6_counts_its_longer_header():
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            with listener.accept()[0] as conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

        server = threading.Thread(target=serve)
        with Capture(port) as capture:
            server.start()
            with exchange(port, [b"six" * 100], family=socket.AF_INET6) as sock:
                check_against_tcp_info(capture, sock, 300, 40)
            server.join()


def test_settle_waits_for_a_clean_close_or_a_reset_and_names_what_is_open(echo):
    with TcpProxy(echo) as proxy, Capture(proxy.port) as capture:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        assert round_trip(sock, b"open") == b"open"
        with pytest.raises(TimeoutError, match=f"127.0.0.1:{sock.getsockname()[1]} <-> "):
            capture.settle(timeout=0.3)
        assert len(capture.open_flows()) == 1
        sock.close()  # a FIN: the proxy passes it on, the echo closes, the proxy closes
        closed = capture.settle()
        assert closed.resets == 0 and capture.open_flows() == []

        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        assert round_trip(sock, b"reset") == b"reset"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a RST, and nothing after it
        reset = capture.settle() - closed
        assert (reset.connections, reset.resets) == (1, 1)
        assert capture.open_flows() == []


def test_phases_subtract_and_wait_for_waits(echo):
    with TcpProxy(echo) as proxy, Capture(proxy.port) as capture:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            connected = capture.wait_for(lambda t: t.packets >= 3)  # the handshake
            assert connected.connections == 1
            assert round_trip(sock, b"z" * 1000) == b"z" * 1000
            # The kilobyte each way, with at least a header on each.
            echoed = capture.wait_for(lambda t: t.bytes - connected.bytes >= 2000 + 2 * 52)
            phase = echoed - connected
            assert phase.up >= 1052 and phase.down >= 1052 and phase.connections == 0
        with pytest.raises(TimeoutError):
            capture.wait_for(lambda t: t.connections == 2, timeout=0.1)
    assert Totals(bytes=5, up=3) - Totals(bytes=2, up=1) == Totals(bytes=3, up=2)


def test_a_nat_drop_leaves_the_client_leg_without_fin_or_reset(echo):
    """What the capture sees of tests/tcpproxy.py's NAT drop: the client's bytes after it
    still go out (a SIM bills them), and no FIN or RST comes back."""
    now = [1_000.0]
    with TcpProxy(echo, nat_idle=60, clock=lambda: now[0]) as proxy, Capture(proxy.port) as capture:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            assert round_trip(sock, b"before") == b"before"
            now[0] += 61
            wait_until(lambda: proxy.nat_drops == 1, 10, what="the NAT drop")
            before = capture.sync()
            sock.sendall(b"y" * 500)
            wait_until(lambda: proxy.bytes_dropped == 500, 10, what="the bytes discarded")
            after = capture.sync() - before
            assert after.up >= 500 + 52 and after.resets == 0
            with pytest.raises(TimeoutError):
                capture.settle(timeout=0.3)  # no FIN, no RST: the flow is still open
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        capture.settle()  # the client's RST ended it


def test_without_net_raw_it_says_to_run_as_root():
    # The module alone (it needs only the standard library), in a folder anyone can
    # read: a checkout in a private temporary folder is closed to `nobody`.
    folder = Path(tempfile.mkdtemp(prefix="spacekiosk-ipcapture-"))
    try:
        folder.chmod(0o755)
        shutil.copy(ROOT / "tests" / "ipcapture.py", folder / "ipcapture.py")
        (folder / "ipcapture.py").chmod(0o644)
        script = (
            "import sys; sys.path.insert(0, '.')\n"
            "from ipcapture import Capture\n"
            "try:\n    Capture(1883)\n"
            "except PermissionError as exc:\n    print(exc)\n"
        )
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        python = os.path.realpath(sys._base_executable)  # not the venv, which may be closed
        result = subprocess.run(
            [*as_nobody, python, "-c", script],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert "run the tests as root" in result.stdout, result.stderr
