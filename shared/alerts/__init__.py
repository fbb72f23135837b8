"""Alerts: tell people when a finding changes, once per channel, and never lose it.

changes    a target's stored status transitions → what is worth saying
messages   one alert per changed target, or one digest; stale alerts
teams, slack, webhook
           an alert rendered for each channel (sizes bounded)
channels   which webhooks are configured; their URLs and secret kept out of sight
delivery   idempotent posting with pacing and Retry-After (the `notify` function)
outbox     a completed scan's pending outbox rows → messages on the `alerts` queue
watchdog   stale scans and targets; flushes scans that never completed
"""
