"""The central collector: MQTT ingest and the central team's web page, in one process."""

from __future__ import annotations

import logging
import threading

from spacekiosk.config import CollectorConfig
from spacekiosk.db import open_store
from spacekiosk.service import notify
from sync.collector.store import COLLECTOR_MIGRATIONS

log = logging.getLogger(__name__)


def run(config: CollectorConfig, stopping: threading.Event) -> int:
    from spacekiosk.web import serve
    from sync.collector.ingest import Ingest
    from sync.collector.web import create_app

    open_store(config.central.database, COLLECTOR_MIGRATIONS, synchronous="FULL").close()
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
