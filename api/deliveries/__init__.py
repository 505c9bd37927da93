"""``/api/v1/deliveries``: every accepted webhook POST and what became of it."""
