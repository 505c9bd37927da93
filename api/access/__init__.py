"""Who is calling and what they may do: every ``/api/v1`` route but the token endpoint
depends on exactly one of the policies here.

- principal.py: the caller (a user's JWT or an agent key), authenticated and rate-limited.
- policies.py: the four policies (read mail, read operations, operate, administer) as
  dependencies, and the route marker tests/api/test_access_matrix.py checks every route by.
- mailboxes.py: the SQL condition that narrows a mailbox-scoped key to its mailboxes.
"""
