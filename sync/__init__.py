"""Sync: hourly aggregation, the durable outbox and the MQTT agent, on the Pi.

A daemon: nothing here imports Flask. It speaks the wire protocol of
`spacekiosk.protocol` to the central server (`collector`), which it never imports.
"""
