"""``/api/v1/search``: full-text search over stored emails (PostgreSQL text search).

- language.py: the text-search configurations an email's language may select.
- sources.py: what is searched (the email's own text; attachment text plugs in here).
- queries.py: the query (tsquery, filters, newest-first pages, ts_headline snippets),
  shared by the route and the MCP tool ``search_emails``.
- routes.py, schemas.py: the route and its answer.
"""
