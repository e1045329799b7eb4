"""A metered link's contacts: when the agent connects, and the TLS session it resumes.

On a link billed by the byte the connection is not kept open: a keep-alive costs about
200 bytes at the IP level per exchange (PINGREQ, PINGRESP and an ACK, each in a TLS
record behind 52 bytes of headers), and a carrier's NAT that drops idle connections after
a few minutes kills a long keep-alive silently anyway. Instead the agent makes a contact
every `sync.contact_every_minutes`: connect, send what is due, wait for the acks,
disconnect (docs/protocol.md, "Metered links").

`Schedule` says when the next contact is due. A contact that fails (no connection, or
one that went silent) is tried again after 1 minute, then 2, 4... never more often, and
never later than the regular interval: a link down for days costs a handful of attempts
a day, not a reconnect storm. The time of the last contact is kept in the store, so a
restart does not cost an extra handshake.

`ResumingContext` offers the TLS session of the last contact, so a retry within the
broker's ticket lifetime (Mosquitto's OpenSSL: 2 hours) costs an abbreviated handshake,
without the certificate.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path

FIRST_RETRY = 60.0  # seconds after a failed contact
JITTER = 0.1  # of each wait, so spaces that failed together do not come back together


class Schedule:
    """When the next contact is due, in wall-clock seconds."""

    def __init__(self, every: float, last_contact: float = 0.0, rng: random.Random | None = None):
        self.every = every
        self.failures = 0
        self.rng = rng or random.Random()
        self.due_at = last_contact + every if last_contact else 0.0

    def due(self, now: float) -> bool:
        if self.due_at > now + self.every:  # the clock was set back past the last contact
            self.due_at = now
        return now >= self.due_at

    def succeeded(self, now: float) -> None:
        self.failures = 0
        self.due_at = now + self.every

    def failed(self, now: float) -> float:
        """Note a failed contact; returns the seconds until the next attempt."""
        wait = min(FIRST_RETRY * 2**self.failures, self.every)
        wait *= 1 + self.rng.uniform(-JITTER, JITTER)
        self.failures += 1
        self.due_at = now + wait
        return wait


class ResumingContext(ssl.SSLContext):
    """A client TLS context that offers the session of its last connection when it opens
    the next one (paho wraps the socket itself, so the session goes in here), while the
    server's ticket is still good by `now`, the agent's clock."""

    session: ssl.SSLSession | None = None
    session_at = 0.0
    now: Callable[[], float] = staticmethod(time.time)

    def wrap_socket(self, sock, *args, **kwargs):
        if self.session is not None and self.now() - self.session_at >= self.session.timeout:
            self.session = None  # the ticket's lifetime is over: the server would refuse it
        kwargs.setdefault("session", self.session)
        try:
            return super().wrap_socket(sock, *args, **kwargs)
        except ValueError:  # a session for another host or context: start afresh
            self.session = None
            kwargs["session"] = None
            return super().wrap_socket(sock, *args, **kwargs)

    def keep(self, sock: object) -> None:
        """Remember the session of `sock` (an SSLSocket) for the next connection."""
        session = getattr(sock, "session", None)
        if session is not None and session is not self.session:
            self.session, self.session_at = session, self.now()


def tls_context(
    ca_file: Path | None, now: Callable[[], float] = time.time, metered: bool = False
) -> ResumingContext:
    """Verify the broker as paho's tls_set() would: against `ca_file`, or the system's CAs.

    On a metered link the ClientHello offers TLS 1.3 alone: without the TLS 1.2 cipher
    suites and extensions it is some 290 bytes shorter, on every contact (measured by
    bench/wire.py). The central broker must speak TLS 1.3, as Mosquitto 2 with OpenSSL
    1.1.1 or later does."""
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.now = now
    if metered:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    if ca_file:
        context.load_verify_locations(cafile=str(ca_file))
    else:
        context.load_default_certs()
    return context
