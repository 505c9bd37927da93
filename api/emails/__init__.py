"""``/api/v1/emails``: stored emails, searched, read and downloaded."""
