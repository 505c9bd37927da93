"""Malware kept in: an attachment ClamAV matched is never served, nor anything that
carries its bytes (the raw message) or its text (worker/ingest/scan.py marks it)."""

from __future__ import annotations

from collections.abc import Iterable

from shared.models import Attachment
from shared.web.errors import ConflictError

QUARANTINED = "quarantined"


def refuse_quarantined(attachments: Iterable[Attachment], what: str) -> None:
    """Refuse ``what`` (409) when one of ``attachments`` is quarantined; the answer names
    the attachment and the signature, never its content."""
    for attachment in attachments:
        if attachment.scan_status == QUARANTINED:
            raise ConflictError(
                f"{what} is not served: attachment {attachment.id} is quarantined (the "
                f"malware scanner matched {attachment.scan_signature or 'a signature'})"
            )
