"""Sync: hourly aggregation, the durable outbox, the MQTT agent, and the central collector.

Nothing here imports Flask except sync.collector.web, which only the collector loads.
"""
