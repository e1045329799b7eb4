"""The fault-injection proxy over real sockets and a real Mosquitto, and the naive publisher
the bytes benchmark compares against."""

from __future__ import annotations

import socket
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from conftest import PASSWORDS, ROOT, SPACE, round_trip, wait_until
from tcpproxy import TcpProxy

from spacekiosk import protocol

sys.path.insert(0, str(ROOT))  # bench/ is not an installed package

from bench import naive

EVENTS = [
    {"sensor": "door", "kind": "open", "at": 1795625800.5 + i}
    if i % 3
    else {"kind": "signin", "purpose": "work", "at": 1795625800.5 + i}
    for i in range(20)
]


def dial(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=10)


def assert_closed(sock: socket.socket) -> None:
    """The peer has gone: reading gives end-of-stream or a reset, never a hang."""
    try:
        while sock.recv(65536):
            pass  # echoes already on their way may come first
    except ConnectionResetError:
        pass


def test_counts_bytes_both_ways_exactly(echo):
    sent: list[bytes] = []
    payloads = [b"x", b"hello proxy", bytes(range(256)) * 1000]  # the last one fills buffers
    with TcpProxy(echo, on_up=sent.append) as proxy, dial(proxy) as one, dial(proxy) as two:
        for sock in (one, two):
            for data in payloads:
                assert round_trip(sock, data) == data
        total = 2 * sum(map(len, payloads))
        assert proxy.bytes_up == proxy.bytes_down == total
        assert b"".join(sent) == 2 * b"".join(payloads)
        assert proxy.connections == 2


def test_cut_closes_every_connection_and_serves_new_ones(echo):
    with TcpProxy(echo) as proxy, dial(proxy) as one, dial(proxy) as two:
        assert round_trip(one, b"ping") == b"ping"
        proxy.cut()  # `two` may still be in the listen backlog: it is cut all the same
        assert_closed(one)
        assert_closed(two)
        with dial(proxy) as three:
            assert round_trip(three, b"again") == b"again"
        assert proxy.connections == 3


def test_block_refuses_new_connections_until_unblocked(echo):
    with TcpProxy(echo) as proxy, dial(proxy) as before:
        assert round_trip(before, b"up") == b"up"
        proxy.block()
        assert_closed(before)
        with dial(proxy) as refused:
            assert_closed(refused)
        proxy.unblock()
        with dial(proxy) as after:
            assert round_trip(after, b"back") == b"back"
        assert proxy.connections == 3


def test_cut_after_lets_exactly_n_more_bytes_up_then_cuts(echo):
    sent: list[bytes] = []
    with TcpProxy(echo, on_up=sent.append) as proxy, dial(proxy) as sock:
        assert round_trip(sock, b"first") == b"first"
        proxy.cut_after(10)
        sock.sendall(b"0123456789abcdefghijklmnopqrstuvwxyz")
        assert_closed(sock)
        assert proxy.bytes_up == len(b"first") + 10
        assert b"".join(sent) == b"first0123456789"
        with pytest.raises(ValueError):
            proxy.cut_after(0)


def test_close_releases_every_socket_and_the_thread(echo):
    proxy = TcpProxy(echo)
    with dial(proxy) as sock:
        assert round_trip(sock, b"bye") == b"bye"
        proxy.close()
        assert_closed(sock)
    assert not [t for t in threading.enumerate() if t.name.startswith("tcpproxy-")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()
    with pytest.raises(RuntimeError):
        proxy.cut()
    proxy.close()  # a second close does nothing


def test_a_target_that_is_down_closes_the_client():
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    with TcpProxy(port) as proxy, dial(proxy) as sock:
        assert_closed(sock)


@pytest.fixture
def collector(broker):
    """The collector's login, straight on the broker, subscribed to every space's usage;
    yields the list of (topic, payload) it receives."""
    received: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="test-collector", protocol=mqtt.MQTTv5
    )
    client.username_pw_set("collector", PASSWORDS["collector"])
    client.on_connect = lambda c, *_: c.subscribe(f"{protocol.PREFIX}/+/usage", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, message: received.append((message.topic, message.payload))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert subscribed.wait(10), "the collector login could not subscribe"
    yield received
    client.disconnect()
    client.loop_stop()


def test_mqtt_through_the_proxy_and_a_cut_drops_the_client(broker, collector):
    sent: list[bytes] = []
    connected, dropped = threading.Event(), threading.Event()
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"spacekiosk-{SPACE}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(SPACE, PASSWORDS[SPACE])
    client.on_connect = lambda *_: connected.set()
    client.on_disconnect = lambda *_: dropped.set()
    with TcpProxy(broker.port, on_up=sent.append) as proxy:
        client.connect("127.0.0.1", proxy.port)
        client.loop_start()
        try:
            assert connected.wait(10)
            payload = b'{"v":1,"hello":"through the proxy"}'
            client.publish(protocol.topic(SPACE, "usage"), payload, qos=1).wait_for_publish(10)
            wait_until(lambda: collector, 10, what="the message at the collector")
            assert collector == [(protocol.topic(SPACE, "usage"), payload)]
            assert payload in b"".join(sent)
            assert proxy.bytes_up > len(payload) and proxy.bytes_down > 0
            proxy.cut()
            assert dropped.wait(10), "paho did not notice the cut"
        finally:
            client.disconnect()
            client.loop_stop()


def test_naive_publisher_delivers_every_event_and_bytes_grow_with_n(broker, collector):
    bytes_up = {}
    for n in (5, 20):
        with TcpProxy(broker.port) as proxy:
            naive.publish_events("127.0.0.1", proxy.port, SPACE, PASSWORDS[SPACE], EVENTS[:n])
            bytes_up[n] = proxy.bytes_up
    wait_until(lambda: len(collector) == 25, 10, what="25 events at the collector")
    topic = protocol.topic(SPACE, "usage")
    assert collector == [(topic, naive.encode(e)) for e in EVENTS[:5] + EVENTS]
    # Each further event costs at least its payload; the connection costs no more.
    assert bytes_up[20] - bytes_up[5] >= sum(len(naive.encode(e)) for e in EVENTS[5:])


def test_naive_publisher_raises_when_the_login_is_refused(broker):
    with pytest.raises(ConnectionRefusedError):
        naive.publish_events("127.0.0.1", broker.port, SPACE, "wrong", EVENTS[:1])


def test_keepalive_exchange_is_measured_as_two_bytes_each_way(broker):
    cost = naive.keepalive_exchange_bytes("127.0.0.1", broker.port, SPACE, PASSWORDS[SPACE], 2)
    assert cost == 4  # PINGREQ and PINGRESP are each a bare 2-byte fixed header


class SteppedClock:
    """A clock the test moves, by as much as it likes (hours, as a wall clock may jump)."""

    def __init__(self) -> None:
        self.now = 1_795_625_800.0

    def __call__(self) -> float:
        return self.now


def accept(listener: socket.socket) -> socket.socket:
    """The proxy's connection to a target the test plays itself."""
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.settimeout(10)
    return conn


def assert_silent(sock: socket.socket) -> None:
    """Nothing arrives: no data, no FIN (recv would return b""), no RST (it would raise)."""
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(65536)
    sock.settimeout(10)


def test_nat_drops_an_idle_connection_silently_both_ways():
    clock = SteppedClock()
    with (
        socket.create_server(("127.0.0.1", 0)) as target,
        TcpProxy(target.getsockname()[1], nat_idle=300, clock=clock) as proxy,
    ):
        client = dial(proxy)
        server = accept(target)
        client.sendall(b"ping")
        assert server.recv(4) == b"ping"
        server.sendall(b"pong")
        assert client.recv(4) == b"pong"
        clock.now += 299  # not yet
        clock.now += 3600  # an hour goes by in one step
        wait_until(lambda: proxy.nat_drops == 1, 10, what="the idle connection dropped")
        assert proxy.links_open == 1

        client.sendall(b"lost on the way up")
        wait_until(lambda: proxy.bytes_dropped == 18, 10, what="the client's bytes discarded")
        assert_silent(server)
        server.sendall(b"lost down")
        wait_until(lambda: proxy.bytes_dropped == 27, 10, what="the target's bytes discarded")
        assert_silent(client)
        server.close()  # the target gives up: its FIN goes no further than the NAT
        assert_silent(client)
        assert (proxy.bytes_up, proxy.bytes_down) == (4, 4)
        assert (proxy.bytes_dropped, proxy.bytes_dropped_up) == (27, 18)
        assert proxy.links_open == 1

        client.close()  # the client gives up too: now the proxy lets go
        wait_until(lambda: proxy.links_open == 0, 10, what="the dropped link closed")

        # A new connection is a new mapping: it works.
        with dial(proxy) as again, accept(target) as server:
            again.sendall(b"fresh")
            assert server.recv(5) == b"fresh"
            server.sendall(b"welcome")
            assert again.recv(7) == b"welcome"
        assert (proxy.connections, proxy.nat_drops) == (2, 1)


def test_nat_keeps_a_connection_that_carries_bytes(echo):
    clock = SteppedClock()
    with TcpProxy(echo, nat_idle=60, clock=clock) as proxy, dial(proxy) as sock:
        for step in range(20):  # twenty minutes, a byte each way every 45 seconds
            clock.now += 45
            assert round_trip(sock, b"%d" % step) == b"%d" % step
        assert proxy.nat_drops == 0
        clock.now += 61
        wait_until(lambda: proxy.nat_drops == 1, 10, what="the drop once it went idle")
        sock.sendall(b"gone")
        assert_silent(sock)
        wait_until(lambda: proxy.bytes_dropped == 4, 10, what="the bytes discarded")


def test_nat_drops_only_the_idle_one_and_cut_closes_dropped_links(echo):
    clock = SteppedClock()
    with TcpProxy(echo, nat_idle=60, clock=clock) as proxy, dial(proxy) as idle:
        assert round_trip(idle, b"hi") == b"hi"
        clock.now += 40
        with dial(proxy) as busy:
            assert round_trip(busy, b"hi") == b"hi"  # its mapping starts now
            clock.now += 40  # idle for 80 seconds, busy for 40
            wait_until(lambda: proxy.nat_drops == 1, 10, what="the older one dropped")
            assert round_trip(busy, b"still here") == b"still here"
            assert proxy.links_open == 2
            proxy.cut()
            assert_closed(idle)
            assert_closed(busy)
        assert proxy.links_open == 0


def test_nat_idle_must_be_positive(echo):
    with pytest.raises(ValueError):
        TcpProxy(echo, nat_idle=0)
