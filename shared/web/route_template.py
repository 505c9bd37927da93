"""The route template a request matched, for metric labels and log lines."""

from __future__ import annotations

from starlette.types import Scope


def route_template(scope: Scope) -> str:
    """The full template of the matched route (``/api/v1/emails/{email_id}``), or
    "unmatched". FastAPI puts the matched route in the scope with its path relative to
    the router that holds it; the prefix it was included under is the part of the
    request path before the part the route's pattern matches."""
    route = scope.get("route")
    relative = getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if not isinstance(relative, str) or pattern is None:
        return "unmatched"
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    for cut, char in enumerate(path):
        if char == "/" and pattern.match(path[cut:]):
            return path[:cut] + relative
    return relative
