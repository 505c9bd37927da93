"""``GET /api/v1/stream``: the live feed of stored emails (and of their attachment text
becoming final) as Server-Sent Events.

- position.py: where a stream stands, and the event ids (Last-Event-ID).
- feed.py: reading new events in commit order, both kinds merged (Last-Event-ID resume).
- text_ready.py: the emails whose attachments' text has all become final.
- slots.py: the bounded number of open streams per caller, counted in Redis.
- routes.py: the route: resume, filters, heartbeats, the stream's slot.
"""
