"""``/api/v1/events``: tracking and sync events."""
