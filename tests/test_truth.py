"""The truth test: a scripted week at a space, played through the real kiosk, sensors,
sync agent, broker and collector, every figure held to tests/oracle.py's."""

from __future__ import annotations

from datetime import datetime

from conftest import write_space_config

from spacekiosk import config

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def test_spaceapi_lastchange_is_this_mornings_opening(tmp_path):
    """SpaceAPI's `lastchange` for a space that opened this morning is this morning, not
    last night's closing (the truth test found it a day behind)."""
    from kiosk.status import _last_change

    week = "[space.opening_hours]\n" + "".join(f'{d} = "10:00-20:00"\n' for d in WEEKDAYS)
    cfg = config.load(write_space_config(tmp_path, broker_port=1, extra=week))
    zone = cfg.space.timezone
    noon = datetime(2026, 11, 29, 12, tzinfo=zone).timestamp()
    assert _last_change(cfg.space, noon) == datetime(2026, 11, 29, 10, tzinfo=zone).timestamp()
    night = datetime(2026, 11, 29, 23, tzinfo=zone).timestamp()
    assert _last_change(cfg.space, night) == datetime(2026, 11, 29, 20, tzinfo=zone).timestamp()
    early = datetime(2026, 11, 29, 9, tzinfo=zone).timestamp()
    assert _last_change(cfg.space, early) == datetime(2026, 11, 28, 20, tzinfo=zone).timestamp()
