"""The management API: a FastAPI app of its own (``api.app:create_app``) in a process of
its own, beside the receiver. People and tools read what the pipeline stored and replay
or discard dead letters here; Mandrill never talks to it.

Agents read here too: with their keys (access/: every route's policy), threads
(conversations/), full-text search (search/), the live feed (stream/) and the MCP server
(mcp/, mounted at ``/api/v1/mcp/``).

It imports nothing of the receiver nor of the worker: it reads PostgreSQL and the object
store, and queues replays by task name (shared/contract.py).
"""
