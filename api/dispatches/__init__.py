"""``/api/v1/emails/{id}/dispatches``: the hand-offs of an email to the platform's handlers."""
