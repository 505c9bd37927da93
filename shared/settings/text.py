"""Attachment text (worker/text/): its queue, and the bounds of one conversion.

Each conversion runs in a child process of its own, under these bounds; an attachment
over one ends ``skipped:<bound>`` (``size``, ``expansion``, ``time``, ``memory``,
``pages``, ``output``), never a stalled or crashed worker.

May import: ``shared.settings.common`` and pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared.settings.common import MIB


class TextFields(BaseModel):
    # Off: attachments are still stored with their first status, nothing is converted
    # and nothing is queued (the sweep too stands still).
    text_enabled: bool = True
    # The conversion tasks' own queue, served by the text workers (compose: text-worker).
    text_queue_name: str = "kave-text"
    # Bigger attachments are not converted (skipped:size).
    text_max_bytes: int = Field(default=50 * MIB, ge=1)
    # An OOXML/ODF zip is not opened when its members would expand past this, in all or
    # by more than text_max_expansion_ratio each (skipped:expansion); the same budget
    # bounds a PDF's compressed streams.
    text_max_expanded_bytes: int = Field(default=256 * MIB, ge=MIB)
    text_max_expansion_ratio: int = Field(default=200, ge=10)
    text_max_zip_members: int = Field(default=10_000, ge=1)
    # The child process: wall time (then SIGKILL), address space (RLIMIT_AS), pages and
    # characters of the result.
    text_timeout_seconds: float = Field(default=30.0, gt=0)
    text_memory_mib: int = Field(default=512, ge=128)
    text_max_pages: int = Field(default=2000, ge=1)
    text_max_characters: int = Field(default=2_000_000, ge=1000)
    # Pending attachments older than this are queued again by the sweep (a lost
    # message, a worker killed mid-job), every text_sweep_interval_seconds.
    text_sweep_after_seconds: int = Field(default=120, ge=1)
    text_sweep_interval_seconds: int = Field(default=60, ge=1)
