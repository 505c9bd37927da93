"""Where Mandrill posts: the one webhook path, served by the receiver and used by the tools.

The receiver builds its route from it; ``kave run``, ``kave send``, the tests and the
benchmarks post to it. The URL registered in Mandrill ends with it.
"""

from __future__ import annotations

API_PREFIX = "/api/v1"
WEBHOOK_PATH = f"{API_PREFIX}/webhooks/mailchimp"
