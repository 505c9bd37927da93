"""The four policies every ``/api/v1`` route (but the token endpoint) depends on.

| policy | admin | operator | reader | read key | read key with mailboxes |
|---|---|---|---|---|---|
| ``read_mail`` | yes | yes | yes | yes | its mailboxes only |
| ``read_operations`` | yes | yes | yes | yes | no |
| ``operate`` | yes | yes | no | no | no |
| ``administer`` | yes | no | no | no | no |

``read_mail``: emails, attachments, threads, search, the stream and MCP;
``read_operations``: deliveries, events, dead letters, dispatches; ``operate``: replay
and discard; ``administer``: erase.

Routes declare one with ``dependencies=[Depends(policy)]`` (a router's and a route's
combine: the stricter wins). A mailbox-scoped key is refused the operations reads because
deliveries, events and dead letters hold every mailbox's mail. Each policy is a plain
function, so ``POLICIES`` lets the access test find the one of every route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.access.principal import CurrentPrincipal, Principal
from shared import roles
from shared.web.errors import ForbiddenError


async def read_mail(principal: CurrentPrincipal) -> Principal:
    """Anyone authenticated; a mailbox-scoped key sees only its mailboxes (the queries
    narrow by api.access.mailboxes)."""
    return principal


async def read_operations(principal: CurrentPrincipal) -> Principal:
    if principal.mailboxes:
        raise ForbiddenError(
            "this key is limited to some mailboxes; deliveries, events, dead letters and "
            "dispatches span every mailbox and need a key without --mailbox or a user"
        )
    return principal


async def operate(principal: CurrentPrincipal) -> Principal:
    if principal.role not in (roles.ADMIN, roles.OPERATOR):
        raise ForbiddenError(
            "replaying or discarding needs an operator or admin user "
            f"(this caller is a {principal.role or 'key'}; kave users create --role operator)"
        )
    return principal


async def administer(principal: CurrentPrincipal) -> Principal:
    if principal.role != roles.ADMIN:
        raise ForbiddenError("erasing data needs an admin user (kave users create --role admin)")
    return principal


POLICIES = (read_mail, read_operations, operate, administer)

MailReader = Annotated[Principal, Depends(read_mail)]
Operator = Annotated[Principal, Depends(operate)]
Admin = Annotated[Principal, Depends(administer)]
