"""``/api/v1/attachments``: the bytes of an email's attachments."""
