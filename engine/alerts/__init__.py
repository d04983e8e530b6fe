"""Alerts to endpoint owners: Slack, email, PagerDuty and a generic webhook.

Owns what an alert says and that it is sent once: `messages` builds each channel's
message without I/O, `outbox` records alerts of record, deduplicated, for the
alert actor to send, and `sends` claims each channel's send before it is dialled.
It never decides when an alert is due: the breakers do.
"""
