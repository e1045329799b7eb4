"""The central server: MQTT ingest and the central team's web page in one process, and
the committer that validates and commits what arrives in a second (see ingest.py).

Both processes write the central store: the committer what arrives over MQTT, the web
process what the spaces send over HTTPS, what the central team enters and the page's
sessions; a thread of the web process judges the alerts and writes them (alerts.py). Starting,
the store is migrated before either begins."""

from __future__ import annotations

import logging
import threading

from collector import store
from spacekiosk.config import CollectorConfig
from spacekiosk.service import notify

log = logging.getLogger(__name__)


def run(config: CollectorConfig, stopping: threading.Event) -> int:
    from collector.alerts import Evaluator
    from collector.ingest import Ingest
    from collector.web import create_app
    from spacekiosk.web import serve

    store.connect(config.central, "ingest").close()  # migrate before anything else
    ingest = Ingest(config)
    ingest.start()
    evaluator = Evaluator(config)  # the alerts' one writer, beside the page and MQTT
    evaluator.start()
    try:
        return serve(
            create_app(config, ingest),
            config.central.listen,
            "collector",
            stopping,
            on_ready=lambda: notify("READY=1"),
        )
    finally:
        evaluator.stop()
        ingest.stop()
