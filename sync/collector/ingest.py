"""The collector's MQTT side: validate, commit, then acknowledge — in that order."""

from __future__ import annotations

import logging
import queue
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from spacekiosk.config import CollectorConfig
from sync import protocol
from sync.collector import store

log = logging.getLogger(__name__)


class Ingest:
    """Subscribes to every space's usage and status; one thread commits what arrives."""

    def __init__(self, config: CollectorConfig):
        self.config = config
        self.db = store.connect(config.central, "ingest")
        self.messages: queue.Queue = queue.Queue(maxsize=10_000)
        self.connected = threading.Event()
        self.client = self._client()
        self.worker = threading.Thread(target=self._work, name="ingest", daemon=True)

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
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *a: self.connected.clear()
        client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the collector's login: %s", reason_code)
            return
        client.subscribe([(f"{protocol.PREFIX}/+/{kind}", 1) for kind in KINDS])
        self.connected.set()
        log.info("collector subscribed on %s:%d", self.config.mqtt.host, self.config.mqtt.port)

    def start(self) -> None:
        cfg = self.config.mqtt
        self.worker.start()
        # A session that outlives a restart: the broker keeps the subscriptions and
        # queues what arrives meanwhile, so the spaces need not resend it.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86400
        self.client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_seconds, clean_start=False, properties=props
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.messages.put(None)
        self.worker.join(timeout=10)
        self.db.close()

    def _work(self) -> None:
        while (item := self.messages.get()) is not None:
            try:
                self.handle(*item)
            except Exception:
                # e.g. a full disk: nothing was committed, so no ack went out and the
                # space will send the batch again. Keep serving the others.
                log.exception("could not commit a message on %s", item[0])

    def handle(self, topic: str, payload: bytes) -> None:
        """One message: a bad one is logged and counted, never committed, never fatal."""
        try:
            space, kind = protocol.parse_topic(topic)
            if kind == "usage":
                ack = take_usage(self.db, space, payload)
            elif kind == "digest":
                ack = take_digest(self.db, space, payload)
            elif kind == "status":
                if payload:  # an empty retained message clears the topic
                    store.commit_status(self.db, space, protocol.read_status(payload))
                return
            else:
                raise protocol.ProtocolError(f"unexpected topic kind {kind!r}")
        except protocol.ProtocolError as exc:
            log.warning("rejected a message on %s: %s", topic, exc)
            store.reject(self.db, topic, str(exc))
            return
        if ack is not None:
            self.client.publish(protocol.topic(space, "ack"), ack, qos=1)


KINDS = ("usage", "status", "digest")


def take_usage(db, space: str, payload: bytes) -> bytes:
    """Validate and commit a usage batch; the ack to send, true only once this returns.
    Raises ProtocolError, having written nothing, for a batch that breaks the protocol."""
    buckets = protocol.read_usage(payload, space)
    store.commit_usage(db, space, buckets)
    return protocol.ack_message(buckets)


def take_digest(db, space: str, payload: bytes) -> bytes | None:
    """Compare a space's digest with what is here; ask for the days that differ."""
    lacking = store.lacking(db, space, protocol.read_digest(payload, space))
    if lacking:
        log.warning("%s: asking again for %d day(s) that differ", space, len(lacking))
        return protocol.ack_message(resend=lacking)
    return None
