"""``/api/v1/search``: full-text search over stored emails (PostgreSQL text search).

- language.py: the text-search configurations an email's language may select.
- sources.py: what is searched: the email's own text, and its attachments' text.
- queries.py: the query (tsquery, filters, a newest-first page per source, merged),
  shared by the route and the MCP tool ``search_emails``.
- snippets.py: the ts_headline snippets of a page's hits, over bounded text.
- routes.py, schemas.py: the route and its answer.
"""
