"""Serving a WSGI app with waitress until SIGTERM, shared by the kiosk and the collector."""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)

STOP_SECONDS = 1.5  # a stop: in-flight requests get this long to finish


def serve(
    app,
    listen: tuple[str, int],
    name: str,
    stopping: threading.Event,
    threads: int = 8,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Serve `app` until `stopping` is set; in-flight requests finish before returning.

    Returns a non-zero exit code, with a clear message, when the address is taken.
    """
    host, port = listen
    try:
        server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident=f"spacekiosk-{name}",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error(
                "%s:%d is already in use: is another %s running? Stop it, or set "
                "another port in the config's listen address.",
                host,
                port,
                name,
            )
        else:
            log.error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        return 1
    actual = server.getsockname()[1] if hasattr(server, "getsockname") else port
    log.info("%s listening on http://%s:%s/", name, host, actual)
    loop = threading.Thread(target=server.run, name=f"{name}-http", daemon=True)
    loop.start()
    if on_ready:
        on_ready()
    stopping.wait()
    _drain(server, loop)
    return 0


def _drain(server, loop: threading.Thread, timeout: float = STOP_SECONDS) -> None:
    """Stop accepting, let the workers finish the requests they hold and their answers
    go out, then close — within `timeout` seconds, so that a stop never outlasts what
    systemd allows. The sockets are closed by the loop's own thread: closed from another
    one, they would vanish under a worker still answering or under the loop's select()."""
    deadline = time.monotonic() + timeout
    server.accepting = False  # the loop no longer accepts; what is in flight goes on
    server.pull_trigger()
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=timeout * 0.6)
    channels = [c for c in list(server._map.values()) if hasattr(c, "total_outbufs_len")]
    while time.monotonic() < deadline and any(c.total_outbufs_len for c in channels):
        time.sleep(0.02)  # the loop thread is writing the last answers out
    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    except OSError:
        # A connection that arrived as accepting was turned off reads, to wasyncore, as
        # the listening socket closing: the loop closed the server and its trigger itself.
        log.debug("the server's loop had already closed the listening socket")
    loop.join(max(deadline - time.monotonic(), 0.1))
