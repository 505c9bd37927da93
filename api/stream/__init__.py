"""``GET /api/v1/stream``: the live feed of stored emails as Server-Sent Events.

- feed.py: reading new emails in commit order (the position, Last-Event-ID resume).
- slots.py: the bounded number of open streams per caller, counted in Redis.
- routes.py: the route: resume, filters, heartbeats, the stream's slot.
"""
