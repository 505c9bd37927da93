"""``/api/v1/emails/{id}/dispatches``: did this email reach its handler, and how."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.access.policies import read_operations
from api.deps import SessionDep
from api.dispatches import queries
from api.dispatches.schemas import DispatchList, DispatchOut
from api.openapi import API_ERRORS, error_responses
from api.params import IdPath
from shared.web.errors import NotFoundError

router = APIRouter(
    prefix="/emails",
    tags=["dispatches"],
    dependencies=[Depends(read_operations)],
    responses=error_responses(*API_ERRORS),
)


@router.get(
    "/{email_id}/dispatches",
    summary="List an email's hand-offs",
    description=(
        "The dispatch of the email to the handler of its route (at most one per route): "
        "`pending` (waiting for an attempt), `delivered`, `dead` (out of attempts; a dead "
        "letter of kind `dispatch` can replay it) or `unrouted` (no route matched). Empty "
        "when the hand-off is off."
    ),
    response_model=DispatchList,
    responses=error_responses(404),
)
def list_dispatches(email_id: IdPath, session: SessionDep) -> DispatchList:
    if not queries.email_exists(session, email_id):
        raise NotFoundError(f"no email {email_id}")
    rows = queries.dispatches_of(session, email_id)
    return DispatchList(
        items=[DispatchOut.model_validate(row, from_attributes=True) for row in rows]
    )
