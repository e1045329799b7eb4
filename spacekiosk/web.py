"""Serving a WSGI app with waitress until SIGTERM, shared by the kiosk and the collector."""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable

from waitress.server import create_server

log = logging.getLogger(__name__)


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
    server.close()  # stop accepting; let the workers finish what they hold
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=10)
    return 0
