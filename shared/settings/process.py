"""Where and as what this process runs: ``KAVE_ENV`` and ``KAVE_PROCESS``.

``ProcessName`` names the kinds of process; ``production.PROCESS_NEEDS`` says what each
one cannot run without, and the production checks read these two fields to pick it.

May import: pydantic only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

ProcessName = Literal["all", "receiver", "api", "worker", "beat", "flower", "migrate"]


class ProcessFields(BaseModel):
    env: Literal["development", "test", "production"] = "development"
    # Which process reads these settings (PROCESS_NEEDS): what production demands.
    process: ProcessName = "all"
