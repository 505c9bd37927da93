"""The MCP server: built with the app, mounted at ``/api/v1/mcp/``.

Stateless Streamable HTTP with JSON answers: every POST carries one JSON-RPC message and
gets its answer back, so any API replica can serve any request (no session to pin) and
nothing stays open. The SDK's DNS-rebinding protection (a Host allow-list) is off: it
protects servers that trust the browser's network position, while every request here
must carry a bearer key, which a rebinding page does not have.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from api.mcp import tools
from api.mcp.gate import McpGate

MCP_PATH = "/mcp"


class KaveMcp:
    """The server, its ASGI app (behind the gate) and the session manager to run."""

    def __init__(self, version: str) -> None:
        self.server = MCPServer(
            name="kave",
            version=version,
            instructions=(
                "Kave's stored inbound email: search it, read emails and whole "
                "conversations, list the mailboxes you may read. Answers are bounded; "
                "pass next_cursor (or next_offset) back for more."
            ),
        )
        tools.register(self.server)
        inner = self.server.streamable_http_app(
            streamable_http_path="/",
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.app: ASGIApp = McpGate(inner)

    def running(self) -> AbstractAsyncContextManager[None]:
        """The session manager's task group, for the API's lifespan (a mounted app's own
        lifespan never runs)."""
        return self.server.session_manager.run()
