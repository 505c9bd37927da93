"""Retention: how long each kind of data is kept, and how ``kave purge`` (and the beat
task every ``purge_interval_seconds``) deletes what is older.

``production`` checks that the raw archive outlives the retry deadline (``workers``).

May import: pydantic only.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class RetentionFields(BaseModel):
    # Days to keep each kind, counted from when it was received; 0 keeps it forever.
    # The raw webhook archive is what reprocessing and dead-letter replays read: keep it
    # at least as long as the retry deadline (checked in production.check_consistency).
    retention_archive_days: int = Field(default=30, ge=0)
    retention_raw_messages_days: int = Field(default=0, ge=0)
    retention_attachments_days: int = Field(default=0, ge=0)
    retention_emails_days: int = Field(default=0, ge=0)
    retention_events_days: int = Field(default=0, ge=0)
    retention_deliveries_days: int = Field(default=0, ge=0)
    # Replayed or discarded dead letters only; open ones wait for an operator.
    retention_dead_letters_days: int = Field(default=0, ge=0)
    purge_interval_seconds: int = Field(default=3600, ge=60)
    # Rows per transaction of kave purge (each batch commits with its object to-do list).
    purge_batch_size: int = Field(default=500, ge=1)
    # An object written more recently than this is never deleted as unreferenced: the
    # receiver writes a large body before its task is queued and workers write objects
    # before the rows naming them, so a young object may be about to be referenced.
    # Keep it above the retry deadline (a queued claim-checked body waits that long).
    orphan_grace_seconds: int = Field(default=86400, ge=0)
