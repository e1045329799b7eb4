"""What every long-running process does the same way: logs, systemd notify, clean stops."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

EX_DATAERR = 65  # sysexits.h: the input (a space id, a name, a number) is wrong
EX_CONFIG = 78  # sysexits.h; the units say RestartPreventExitStatus=78


class _JournalFormatter(logging.Formatter):
    """`<prio>logger: message` — journald reads the prefix as the syslog priority."""

    PRIORITIES = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        prio = self.PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def setup_logging(service: str, verbose: bool = False) -> None:
    """Log to stderr: priority-prefixed lines under journald, timestamps on a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s", "%H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("waitress.queue", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def notify(state: str) -> bool:
    """Send a sd_notify(3) datagram ("READY=1", "WATCHDOG=1", "STOPPING=1") if under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def status(text: str) -> bool:
    """Tell systemd what the service is doing (`systemctl status` shows it)."""
    return notify(f"STATUS={text}")


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000


def stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a main loop can finish its work and exit.

    A main loop waits on it (or on an event it also sets), never sleeps past it. The
    handler runs on the main thread between two bytecodes, possibly while that thread
    holds the event's own lock or is writing to stderr; so it only starts a thread,
    and the thread logs and sets the event.
    """
    stopping = threading.Event()

    def stop(signum: int) -> None:
        logging.getLogger("spacekiosk").info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    def handle(signum, frame):
        threading.Thread(target=stop, args=(signum,), name="stop", daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stopping
