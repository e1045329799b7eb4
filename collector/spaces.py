"""The spaces' own HTTPS routes, for a space whose MQTT port is blocked: the same batches,
digests and statuses as over MQTT, behind each space's bearer token.

Each route writes through store.py, in the web process: a batch's usage and a digest's
contact (ingest.py's `take_usage`, `take_digest`), a status, and a payload that breaks
the protocol among the rejects (answered 400 with the reason).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, g, jsonify, request

from collector import store
from collector.ingest import take_digest, take_usage
from spacekiosk import protocol

bp = Blueprint("spaces", __name__, url_prefix="/api/v1")


def space_of_token() -> str:
    """The space the request's bearer token belongs to; 401 without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    space = store.token_space(g.db, token.strip()) if scheme.lower() == "bearer" else None
    if space is None:
        abort(401, "send the space's token as 'Authorization: Bearer <token>'")
    return space


def body() -> bytes:
    """The request's body, refused (413) if it is larger than a batch may be."""
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


@bp.post("/ingest")
def ingest():
    """The same batch as over MQTT, the same validation and upsert; the answer is the
    ack MQTT would have carried."""
    return Response(from_space(take_usage), mimetype="application/octet-stream")


@bp.post("/digest")
def digest():
    """Reconciliation: the answer is an ack that asks again for any day the collector
    holds differently (or for nothing)."""
    ack = from_space(take_digest) or protocol.ack_message()
    return Response(ack, mimetype="application/octet-stream")


@bp.post("/status")
def status():
    from_space(_take_status)
    return jsonify({"ok": True})


def _take_status(db, space: str, text: bytes) -> None:
    store.commit_status(db, space, protocol.read_status(text))
