"""Sender trust and malware scanning (README "Sender trust, content hygiene, malware"):
the DNS the verdicts ask, and the ClamAV daemon attachments are streamed to.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from shared.settings.common import split_csv


class TrustFields(BaseModel):
    # Verify senders (DKIM, ARC, DMARC alignment: worker/ingest/trust/). Off: the
    # verdict is NULL (not checked), and a route requiring sender_trust pass takes nothing.
    sender_trust: bool = True
    # DNS servers asked for DKIM keys and DMARC policies, host or host:port,
    # comma-separated; empty: the system's resolvers (/etc/resolv.conf).
    sender_trust_dns: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # One look-up's whole budget; a look-up that takes longer makes the verdict unknown.
    sender_trust_dns_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Stream attachments to clamd (worker/ingest/scan.py). Off by default.
    malware_scan: bool = False
    # clamd's socket: a Unix socket path, or host:port for its TCP socket.
    clamd_socket: str = "/var/run/clamav/clamd.ctl"
    clamd_timeout_seconds: float = Field(default=30.0, gt=0)
    # Tries per attachment while clamd does not answer; then the attachment is unscanned.
    clamd_attempts: int = Field(default=3, ge=1, le=10)

    _split_trust_dns = field_validator("sender_trust_dns", mode="before")(split_csv)
