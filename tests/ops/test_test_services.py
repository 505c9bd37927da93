"""The test suite's own services: two test sessions on one machine never share Redis.

Each session empties its Redis database when it starts; sharing one would wipe the other
session's queue (a `pytest` run while CI runs on the same machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests import services
from tests.services import REPO

_OTHER_SESSION = """
from pathlib import Path
from tests import services
with services.redis_server(Path({tmp!r})) as url:
    print(url)
"""


@pytest.mark.skipif(
    bool(os.environ.get("KAVE_TEST_REDIS_URL")), reason="KAVE_TEST_REDIS_URL is shared on purpose"
)
def test_another_session_gets_a_redis_database_of_its_own(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    marker = "kave-test:another-session-must-not-flush-this"
    redis_client.set(marker, "1")
    other = subprocess.run(
        [sys.executable, "-c", _OTHER_SESSION.format(tmp=str(tmp_path))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert other.returncode == 0, other.stderr
    other_url = other.stdout.strip()
    assert other_url
    assert other_url != redis_url
    assert redis_client.get(marker) == b"1"  # its start emptied its own database only
    redis_client.delete(marker)
    if other_url.startswith(services.MACHINE_REDIS + "/"):
        # The machine's Redis: its lock went with that process, so the database is free.
        with services.redis_server(tmp_path) as again:
            assert again == other_url
