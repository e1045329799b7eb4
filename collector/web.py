"""The collector's web app: the central team's pages, JSON API and CSV (behind a login
or an API token), the spaces' own HTTPS routes (behind each space's token) and /healthz,
each a blueprint, on one connection to the central store per server thread.

Nothing here writes; the blueprints do: the spaces' routes what the spaces send (through
store.py), the pages what the central team enters (accounts.py), the login its sessions
and failed tries (sessions.py).
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, Response, abort, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

from collector import api, auth, formats, health, pages, spaces, store
from spacekiosk.config import Central, CollectorConfig
from spacekiosk.db import StoreError

log = logging.getLogger(__name__)

TITLES = {
    400: "That did not work",
    401: "Log in first",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    429: "Too many tries",
    503: "Try again shortly",
}


def create_app(config: CollectorConfig, ingest=None) -> Flask:
    """The pages and APIs; `ingest` (when running) lets /healthz say if MQTT is up."""
    app = Flask(__name__)
    app.config["COLLECTOR"] = config
    app.extensions["ingest"] = ingest
    app.extensions["central_store"] = connection = PerThreadStore(config.central)
    app.before_request(attach_db)
    auth.init_app(app, config.central, connection)  # after attach_db: the guard reads it
    app.after_request(security_headers)
    formats.register(app)
    for blueprint in (pages.bp, api.bp, spaces.bp, health.bp):
        app.register_blueprint(blueprint)
    for code in TITLES:
        app.register_error_handler(code, client_error)
    app.register_error_handler(StoreError, store_unavailable)
    if config.central.proxies:  # the caller is who the proxy says, not the proxy
        hops = config.central.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    return app


class PerThreadStore:
    """Each server thread's connection to the central store, opened on its first request
    and again if it was lost (a PostgreSQL server can go away): a connection must not
    serve two requests at once, and opening one per request would cost more than most."""

    def __init__(self, central: Central):
        self.central = central
        self.local = threading.local()

    def __call__(self):
        db = getattr(self.local, "db", None)
        if db is None or not store.alive(db):
            self.local.db = store.connect(self.central)
        return self.local.db


def attach_db() -> None:
    try:
        g.db = current_app.extensions["central_store"]()
    except StoreError as exc:
        log.error("%s", exc)
        abort(503, "the central store cannot be reached; try again in a minute")


def store_unavailable(exc: StoreError):
    log.error("%s", exc)
    return client_error(ServiceUnavailable("the central store cannot be reached; try again"))


# The pages have no script and load nothing from elsewhere: say so, so that a browser
# refuses anything injected. Figures and the API are nobody else's to keep.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def security_headers(response: Response) -> Response:
    """On every answer, errors and redirects included: the stylesheet alone may be kept."""
    response.headers.update(SECURITY_HEADERS)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def client_error(exc):
    """A 4xx: JSON for the API and CSV, a page for people; never a 500."""
    if auth.wants_json() or request.blueprint == spaces.bp.name:
        response = jsonify({"error": exc.description})
        if exc.code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="spacekiosk"'
        return response, exc.code
    page = render_template("error.html", title=TITLES[exc.code], message=exc.description)
    return page, exc.code
