"""``/api/v1/conversations``: threads (emails sharing ``conversation_id``), newest
activity first, and one thread's emails in order."""
