"""The central collector: MQTT ingest and the central team's web page in one process, and
the committer that validates and commits what arrives in a second (see ingest.py)."""

from __future__ import annotations

import logging
import threading

from spacekiosk.config import CollectorConfig
from spacekiosk.service import notify
from sync.collector import store

log = logging.getLogger(__name__)


def run(config: CollectorConfig, stopping: threading.Event) -> int:
    from spacekiosk.web import serve
    from sync.collector.ingest import Ingest
    from sync.collector.web import create_app

    store.connect(config.central, "ingest").close()  # migrate before anything else
    ingest = Ingest(config)
    ingest.start()
    try:
        return serve(
            create_app(config, ingest),
            config.central.listen,
            "collector",
            stopping,
            on_ready=lambda: notify("READY=1"),
        )
    finally:
        ingest.stop()
