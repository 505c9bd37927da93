"""Annotated dependency aliases, so routes declare what they need in one word."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from receiver.enqueue import DeliveryQueue
from receiver.request_id import current_request_id
from shared.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_delivery_queue(request: Request) -> DeliveryQueue:
    queue: DeliveryQueue = request.app.state.delivery_queue
    return queue


def get_request_id() -> str:
    return current_request_id()


SettingsDep = Annotated[Settings, Depends(get_settings)]
DeliveryQueueDep = Annotated[DeliveryQueue, Depends(get_delivery_queue)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
