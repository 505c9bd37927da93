"""Who may do what in the management API: the roles of users and the scopes of keys.

* ``admin``: everything, including erasing data.
* ``operator``: reads everything, replays and discards dead letters; erases nothing.
* ``reader``: reads everything, changes nothing.

Agent keys (``kave keys create``) have the scope ``read``: a reader's rights, narrowed to
the mailboxes the key names, if it names any. The API enforces all of it (api/access).
"""

from __future__ import annotations

from typing import Final

ADMIN: Final = "admin"
OPERATOR: Final = "operator"
READER: Final = "reader"
ROLES: Final = (ADMIN, OPERATOR, READER)

READ_SCOPE: Final = "read"
KEY_SCOPES: Final = (READ_SCOPE,)
