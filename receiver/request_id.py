"""Request ids of the receiver: the middleware both HTTP apps use
(shared/web/request_id.py), under the names the webhook modules import."""

from shared.web.request_id import HEADER, RequestIdMiddleware, current_request_id

__all__ = ["HEADER", "RequestIdMiddleware", "current_request_id"]
