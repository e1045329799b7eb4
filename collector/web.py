"""The collector's web side: the central team's pages, JSON API and CSV (behind a login
or an API token), and the spaces' own HTTPS routes (behind each space's token)."""

from __future__ import annotations

import logging
import threading

from flask import Flask, Response, abort, g, jsonify, render_template, request
from werkzeug.exceptions import ServiceUnavailable

from collector import api, auth, formats, pages, store
from collector.ingest import take_digest, take_usage
from spacekiosk import protocol
from spacekiosk.config import CollectorConfig
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
    """The page and API; `ingest` (when running) lets /healthz say if MQTT is up."""
    app = Flask(__name__)
    app.config["COLLECTOR"] = config
    local = threading.local()

    def connection():
        """This thread's connection to the central store (a new one if it was lost)."""
        db = getattr(local, "db", None)
        if db is None or not store.alive(db):
            local.db = store.connect(config.central)
        return local.db

    @app.before_request
    def attach_db():
        try:
            g.db = connection()
        except StoreError as exc:
            log.error("%s", exc)
            abort(503, "the central store cannot be reached; try again in a minute")

    auth.init_app(app, config.central, connection)  # after attach_db: the guard reads it
    app.after_request(security_headers)
    formats.register(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)

    def space_of_token() -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        space = store.token_space(g.db, token.strip()) if scheme.lower() == "bearer" else None
        if space is None:
            abort(401, "send the space's token as 'Authorization: Bearer <token>'")
        return space

    def body() -> bytes:
        if (request.content_length or 0) > protocol.MAX_WIRE_BYTES:
            abort(413, f"a batch may be at most {protocol.MAX_WIRE_BYTES} bytes")
        return request.get_data(cache=False)

    def from_space(take):
        """`take(db, space, payload)` for the space the token names. A payload that breaks
        the protocol is counted among the rejects and answered 400 with the reason."""
        space = space_of_token()
        payload = body()
        try:
            return take(g.db, space, payload)
        except protocol.ProtocolError as exc:
            store.reject(g.db, request.path + " " + space, str(exc))
            abort(400, str(exc))

    @app.post("/api/v1/ingest")
    def ingest_api():
        """The HTTPS route for a space whose MQTT port is blocked: the same batch, the
        same validation and upsert; the answer is the ack MQTT would have carried."""
        return Response(from_space(take_usage), mimetype="application/octet-stream")

    @app.post("/api/v1/digest")
    def digest_api():
        """Reconciliation over the HTTPS route: the answer is an ack that asks again for
        any day the collector holds differently (or for nothing)."""
        ack = from_space(take_digest) or protocol.ack_message()
        return Response(ack, mimetype="application/octet-stream")

    @app.post("/api/v1/status")
    def status_api():
        from_space(
            lambda db, space, text: store.commit_status(db, space, protocol.read_status(text))
        )
        return jsonify({"ok": True})

    @app.get("/healthz")
    def healthz():
        g.db.execute("SELECT 1").fetchone()
        broker = ingest is not None and ingest.connected.is_set()
        committer = ingest is not None and ingest.committer.alive()
        return jsonify(
            {
                "ok": True,
                "broker": "connected" if broker else "disconnected",
                "committer": "running" if committer else "stopped",
                "committer_restarts": ingest.restarts if ingest is not None else 0,
                "committed": ingest.committed if ingest is not None else 0,
            }
        )

    for code in TITLES:
        app.register_error_handler(code, client_error)

    @app.errorhandler(StoreError)
    def store_unavailable(exc):
        log.error("%s", exc)
        return client_error(ServiceUnavailable("the central store cannot be reached; try again"))

    return app


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
    if auth.wants_json() or request.endpoint in ("ingest_api", "digest_api", "status_api"):
        response = jsonify({"error": exc.description})
        if exc.code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="spacekiosk"'
        return response, exc.code
    page = render_template("error.html", title=TITLES[exc.code], message=exc.description)
    return page, exc.code
