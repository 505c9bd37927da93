"""``/api/v1/dead-letters``: what could not be processed; replay or discard it."""
