"""Filling the central store the way a test wants it, buckets in hand: the collector
itself only ever stores what it read off the wire (`store.wire_rows`)."""

from __future__ import annotations

from collector import store
from spacekiosk.protocol import Bucket, counts_json


def bucket_rows(space: str, buckets: list[Bucket]) -> list[store.Row]:
    """The rows `store.commit` takes for a space's buckets."""
    return [(space, b.start, b.hours, b.version, counts_json(b.counts)) for b in buckets]


def commit_usage(db, space: str, buckets: list[Bucket], now: float | None = None) -> None:
    """Upsert each (space, hour), keeping the highest version, as the collector does."""
    store.commit(db, usage=bucket_rows(space, buckets), now=now)
