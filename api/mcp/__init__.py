"""The MCP server agents call Kave through: the official ``mcp`` SDK's MCPServer over
Streamable HTTP, mounted in the API at ``/api/v1/mcp/``.

- gate.py: the ASGI wrapper that authenticates the bearer (the API's users and agent
  keys, their rate limits) before the SDK sees the request, and hands tools the caller.
- tools.py: the five tools (search_emails, get_email, get_thread, get_attachment_text,
  list_mailboxes): bounded answers with cursors, read through the caller's mailboxes.
- reads.py: the reads the tools make that the REST routes do not (mailboxes, bodies cut
  to a size, attachment text).
- server.py: the MCPServer, its app and its session manager's lifetime.
"""
