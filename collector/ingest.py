"""The collector's MQTT side: validate, commit, then acknowledge — in that order.

Two processes share the work, so that a busy collector uses two cores. This one speaks
MQTT: it gathers what arrives into batches and publishes the acks. A committer process
reads and validates each batch, commits it in one transaction, and answers with the acks
that are now true. Python runs one thread at a time in a process; in one process, the
network and the store would wait for each other.

On the MQTT side the committer alone writes, through `store.commit`: usage, statuses,
contact times and rejects. `take_usage` and `take_digest` do the same for the spaces'
HTTPS routes, in the web process.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector import store
from spacekiosk import protocol
from spacekiosk.config import Central, CollectorConfig
from spacekiosk.db import StoreError

log = logging.getLogger(__name__)


BATCH = 500  # messages committed in one transaction at most
FLUSH_SECONDS = 0.05  # how long a message waits for others to share its commit
IN_FLIGHT = 4  # batches handed to the committer at once: one committing, one being read


@dataclass
class Arrivals:
    """What a batch of messages asks the store for, read and validated before writing."""

    rows: list[store.Row] = field(default_factory=list)
    acks: list[tuple[str, bytes]] = field(default_factory=list)  # sent once rows commit
    statuses: list[tuple[str, dict]] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    digests: list[tuple[str, dict[int, tuple[int, int]]]] = field(default_factory=list)
    contacts: set[str] = field(default_factory=set)  # spaces heard from, live
    now: float = field(default_factory=time.time)  # what a message's hours are judged by


@dataclass
class Answer:
    """What the committer says of a batch: the acks to publish, and the buckets committed."""

    acks: list[tuple[str, bytes]] = field(default_factory=list)
    buckets: int = 0


class Ingest:
    """Subscribes to every space's usage, status and digests; hands them in batches to
    the committer, and publishes each ack it answers with.

    With `central.shared`, several collectors share the spaces' messages (an MQTT 5
    shared subscription: each message goes to one of them). Their sessions then start
    clean: a collector that stops has nothing queued for it, and what it had taken but
    not acknowledged comes again from the space after its ack timeout.
    """

    def __init__(self, config: CollectorConfig):
        self.config = config
        self.pending: list[tuple[str, bytes]] = []
        self.batch = threading.Lock()  # guards `pending`, for the network and the flusher
        self.slots = threading.Semaphore(IN_FLIGHT)
        self.handing = threading.Lock()  # guards `committer` and `sent`
        self.sent = self.answered = 0  # batches
        self.waiting = threading.Event()  # set when a batch is begun
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.committed = 0  # buckets, for the benchmark and the health check
        self.restarts = 0  # of the committer, for the health check
        self.client = self._client()
        self.committer = Committer(config.central)
        self.flusher = threading.Thread(target=self._flush, name="ingest-flush", daemon=True)
        self.answers = threading.Thread(target=self._answer, name="ingest-acks", daemon=True)

    def _client(self) -> mqtt.Client:
        cfg = self.config.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.central.client_id,
            protocol=mqtt.MQTTv5,
        )
        password = cfg.password_file.read_text().strip() if cfg.password_file else None
        client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None)
        client.reconnect_delay_set(1, 10)
        # A batch's acks go out together; the broker's receive maximum still applies.
        client.max_inflight_messages_set(BATCH)
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a: self.connected.clear()
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the collector's login: %s", reason_code)
            return
        client.subscribe([(topic, 1) for topic in subscriptions(self.config.central.shared)])
        self.connected.set()
        log.info("collector subscribed on %s:%d", self.config.mqtt.host, self.config.mqtt.port)

    def _on_message(self, client, userdata, message) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # the broker checks topics are UTF-8; never trust it
            log.warning("dropped a message whose topic is not UTF-8")
            return
        with self.batch:
            # Whether it is a retained copy the broker handed over on subscribing: that
            # is an old message, not the space speaking now.
            self.pending.append((topic, message.payload, message.retain))
            if len(self.pending) == 1:
                self.waiting.set()  # a new batch begins: the flusher's clock starts
            elif len(self.pending) >= BATCH:
                self._hand_over()

    def _flush(self) -> None:
        """Hand over a batch that is not full FLUSH_SECONDS after its first message; asleep
        while nothing waits, so an idle collector wakes for nothing."""
        while self.waiting.wait() and not self.stopping.is_set():
            self.stopping.wait(FLUSH_SECONDS)
            with self.batch:
                if not self.stopping.is_set():  # else leave it set, to end the loop
                    self.waiting.clear()
                if self.pending:
                    self._hand_over()

    def _hand_over(self) -> None:
        """Give the pending batch to the committer; while it has IN_FLIGHT batches, wait,
        and so read no more: the broker keeps what arrives meanwhile."""
        items, self.pending = self.pending, []
        self.slots.acquire()
        with self.handing:
            self.sent += 1
            self.committer.send(items)

    def _answer(self) -> None:
        """Publish what the committer says is committed, batch by batch, in order."""
        while True:
            answer = self.committer.receive()
            if answer is None:
                if self.stopping.is_set():
                    return
                # It died with batches in hand: none was acknowledged, so each comes
                # again from its space. Start another and go on.
                log.error("the committer stopped (exit code %s); starting it again",
                          self.committer.exit_code())  # fmt: skip
                if self.stopping.wait(1):  # stopped meanwhile: start nothing
                    return
                with self.handing:
                    self.committer = Committer(self.config.central)
                    lost, self.answered = self.sent - self.answered, self.sent
                self.restarts += 1
                for _ in range(lost):
                    self.slots.release()
                continue
            for topic, ack in answer.acks:
                self.client.publish(topic, ack, qos=1)
            self.committed += answer.buckets
            self.answered += 1
            self.slots.release()

    def start(self) -> None:
        cfg = self.config.mqtt
        self.answers.start()
        self.flusher.start()
        # Alone, a session that outlives a restart: the broker keeps the subscriptions and
        # queues what arrives meanwhile, so the spaces need not resend it.
        shared = self.config.central.shared
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if shared else 86400
        self.client.connect_async(
            cfg.host,
            cfg.port,
            keepalive=cfg.keepalive_seconds,
            clean_start=shared,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.stopping.set()
        with self.batch:  # not between the flusher's look at `stopping` and its clear()
            self.waiting.set()
        self.flusher.join(timeout=10)
        with self.batch:
            if self.pending:  # taken from the broker: commit it, though no ack can go out
                self._hand_over()
        self.committer.stop()
        self.answers.join(timeout=10)


class Committer:
    """A process of its own that validates and commits batches and answers with acks."""

    def __init__(self, central: Central):
        context = multiprocessing.get_context("spawn")  # nothing of this process's threads
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=commit_batches, args=(central, theirs), name="collector-committer", daemon=True
        )
        self.process.start()
        theirs.close()

    def send(self, items: list[tuple[str, bytes, bool]] | None) -> None:
        # If it is gone, the answer thread starts another, and this batch comes again.
        with contextlib.suppress(OSError):
            self.conn.send(items)

    def receive(self) -> Answer | None:
        """The next answer; None once the committer has stopped."""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return None

    def alive(self) -> bool:
        return self.process.is_alive()

    def exit_code(self) -> int | None:
        self.process.join(timeout=5)
        return self.process.exitcode

    def stop(self) -> None:
        self.send(None)
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


def commit_batches(central: Central, conn) -> None:
    """The committer's life: a batch in, an answer out, until it is told to stop or its
    collector is gone. The collector's stop is its stop: it ignores the signals.

    One thread reads and validates the next batch while another waits on the store with
    the one before: the store's work runs outside Python's lock, so the two overlap."""
    from spacekiosk.service import setup_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging("collector")
    read_batches: queue.Queue[Arrivals | None] = queue.Queue(maxsize=1)
    writer = threading.Thread(target=_write, args=(central, read_batches, conn), name="commit")
    writer.start()
    while True:
        try:
            items = conn.recv()
        except EOFError:
            break
        if items is None:
            break
        read_batches.put(arrive(items))
    read_batches.put(None)
    writer.join()


def _write(central: Central, read_batches: queue.Queue, conn) -> None:
    db = None
    while (arrivals := read_batches.get()) is not None:
        if db is None or not store.alive(db):
            db = _reconnect(central, db)
        conn.send(settle(db, arrivals) if db is not None else Answer())
    if db is not None:
        db.close()


def _reconnect(central: Central, lost):
    """A fresh connection to the store, or None (said in the log) if it cannot be had:
    the batch at hand is then not acknowledged, and comes again from its spaces."""
    if lost is not None:
        with contextlib.suppress(Exception):
            lost.close()
    try:
        db = store.connect(central, "ingest")
    except StoreError as exc:
        log.error("%s; trying again with the next messages", exc)
        return None
    if lost is not None:
        log.info("reconnected to the central store")
    return db


def arrive(items: list[tuple[str, bytes, bool]]) -> Arrivals:
    """Read and validate each message of a batch — (topic, payload, retained) — into its
    rows to store and its ack, ready to go once they are committed. A bad one is logged
    and counted, never fatal."""
    arrivals = Arrivals()
    for topic, payload, retained in items:
        read(arrivals, topic, payload, retained)
    return arrivals


def settle(db, arrivals: Arrivals) -> Answer:
    """Commit a batch in one transaction and say what to acknowledge: nothing, if the
    commit fails (a full disk, PostgreSQL gone); the spaces then send it all again."""
    try:
        store.commit(
            db,
            usage=arrivals.rows,
            statuses=arrivals.statuses,
            rejects=arrivals.rejects,
            contacts=arrivals.contacts,
        )
    except Exception:
        log.exception("could not commit a batch of %d bucket(s)", len(arrivals.rows))
        return Answer()
    answer = Answer(acks=arrivals.acks, buckets=len(arrivals.rows))
    for space, claimed in arrivals.digests:
        try:
            ack = compare_digest(db, space, claimed)
        except Exception:  # the store gone, or a bug: the next digest comes in a week
            log.exception("could not compare the digest of %s", space)
            continue
        if ack is not None:
            answer.acks.append((protocol.topic(space, "ack"), ack))
    return answer


def subscriptions(shared: bool) -> list[str]:
    """The topic filters a collector subscribes to. Statuses are retained and every
    collector keeps them; usage and digests are shared out when `shared`."""
    topics = [f"{protocol.PREFIX}/+/{kind}" for kind in ("usage", "digest")]
    if shared:
        topics = [f"$share/{SHARE_GROUP}/{topic}" for topic in topics]
    return [*topics, f"{protocol.PREFIX}/+/status"]


SHARE_GROUP = "spacekiosk-collectors"


def read(arrivals: Arrivals, topic: str, payload: bytes, retained: bool = False) -> None:
    """File one message under what it asks for, or under rejects with the reason. Any
    valid message is contact with its space, but for a status that is a retained copy
    or a last will (the broker speaking for a space it lost)."""
    try:
        space, kind = protocol.parse_topic(topic)
        if kind == "usage":
            hours = protocol.read_hours(payload, space, arrivals.now)
            arrivals.rows += store.wire_rows(space, hours)
            ack = protocol.hours_ack([hour for _, hour in hours])
            arrivals.acks.append((protocol.topic(space, "ack"), ack))
            arrivals.contacts.add(space)
        elif kind == "digest":
            arrivals.digests.append((space, protocol.read_digest(payload, space, arrivals.now)))
            arrivals.contacts.add(space)
        elif kind == "status":
            if payload:  # an empty retained message clears the topic
                status = protocol.read_status(payload, arrivals.now)
                arrivals.statuses.append((space, status))
                if status["online"] and not retained:
                    arrivals.contacts.add(space)
        else:
            raise protocol.ProtocolError(f"unexpected topic kind {kind!r}")
    except protocol.ProtocolError as exc:
        log.warning("rejected a message on %s: %s", topic, exc)
        arrivals.rejects.append((topic, str(exc)))
    except Exception:  # what no check foresaw is a bug here, not a reason to stop
        log.exception("could not read a message on %s; rejected it", topic)
        arrivals.rejects.append((topic, "could not be read (see the collector's log)"))


def take_usage(db, space: str, payload: bytes) -> bytes:
    """Validate and commit a usage batch; the ack to send, true only once this returns.
    Raises ProtocolError, having written nothing, for a batch that breaks the protocol."""
    hours = protocol.read_hours(payload, space)
    store.commit(db, usage=store.wire_rows(space, hours))
    return protocol.hours_ack([hour for _, hour in hours])


def take_digest(db, space: str, payload: bytes) -> bytes | None:
    """Compare a space's digest with what is here (the HTTPS route): it is contact with
    the space, recorded first; then ask for the days that differ."""
    claimed = protocol.read_digest(payload, space)
    store.commit(db, contacts=[space])
    return compare_digest(db, space, claimed)


def compare_digest(db, space: str, claimed: dict[int, tuple[int, int]]) -> bytes | None:
    """The ack asking again for the days of a digest that differ here, or None."""
    lacking = store.lacking(db, space, claimed)
    if lacking:
        log.warning("%s: asking again for %d day(s) that differ", space, len(lacking))
        return protocol.ack_message(resend=lacking)
    return None
