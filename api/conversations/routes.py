"""``/api/v1/conversations``: threads newest activity first, and one thread in order."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.exceptions import RequestValidationError

from api.access.mailboxes import visible_emails
from api.access.policies import MailReader, read_mail
from api.conversations import queries
from api.conversations.schemas import (
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    ThreadAttachment,
    ThreadEmail,
)
from api.deps import SessionDep
from api.filters import lower_equals
from api.openapi import API_ERRORS, error_responses
from api.pagination import DEFAULT_PAGE_SIZE, CursorParam, PageSize
from api.params import text_filter
from shared.contract import attachment_text_url
from shared.models import Attachment, Email
from shared.web.errors import NotFoundError

router = APIRouter(
    prefix="/conversations",
    tags=["conversations"],
    dependencies=[Depends(read_mail)],
    responses=error_responses(*API_ERRORS),
)


def _cursor(value: str | None, key_type: type[str] | type[int]) -> tuple[Any, Any] | None:
    if not value:
        return None
    try:
        return queries.decode_cursor(value, key_type)
    except queries.BadCursorError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": f"{exc}: pass next_cursor unchanged"}]
        ) from None


def thread_attachment(attachment: Attachment) -> ThreadAttachment:
    return ThreadAttachment(
        id=attachment.id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        text_status=attachment.text_status,
        content_url=f"/api/v1/attachments/{attachment.id}/content",
        text_url=attachment_text_url(attachment.id, attachment.text_status, attachment.scan_status),
    )


def thread_email(email: Email) -> ThreadEmail:
    fields = set(ThreadEmail.model_fields) - {"attachments"}
    return ThreadEmail.model_validate(
        {
            **{name: getattr(email, name) for name in fields},
            "attachments": [thread_attachment(a) for a in email.attachments],
        }
    )


@router.get(
    "",
    summary="List conversations",
    description=(
        "Threads (emails sharing a conversation id), newest activity first. `mailbox` is "
        "an envelope recipient (any case), `mailbox_hash` the plus-address tag. Pages: "
        "pass `next_cursor` back as `cursor` until it is null."
    ),
    response_model=ConversationPage,
)
def list_conversations(
    session: SessionDep,
    principal: MailReader,
    *,
    mailbox: Annotated[str | None, text_filter("Envelope recipient.")] = None,
    mailbox_hash: Annotated[str | None, text_filter("Plus-address tag.", 256)] = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> ConversationPage:
    conditions = []
    visible = visible_emails(principal)
    if visible is not None:
        conditions.append(visible)
    if mailbox is not None:
        conditions.append(lower_equals(Email.envelope_recipient, mailbox))
    if mailbox_hash is not None:
        conditions.append(Email.mailbox_hash == mailbox_hash)
    rows, next_cursor = queries.list_conversations(
        session,
        conditions=conditions,
        cursor=_cursor(cursor, str),
        limit=limit,
    )
    return ConversationPage(
        items=[
            ConversationSummary(
                id=r.id,
                subject=r.subject,
                last_from_address=r.last_from_address,
                email_count=r.email_count,
                last_activity_at=r.last_activity_at,
            )
            for r in rows
        ],
        next_cursor=next_cursor,
    )


@router.get(
    "/{conversation_id:path}",
    summary="Read a conversation",
    description=(
        "The thread's emails in the order they arrived, each with its sender, `reply_text` "
        "(what it adds, without quotes and signature) and attachments; the participants "
        "and the last activity. At most `limit` emails a page; `next_cursor` continues."
    ),
    response_model=ConversationDetail,
    responses=error_responses(404),
)
def get_conversation(
    session: SessionDep,
    principal: MailReader,
    conversation_id: Annotated[
        str, Path(min_length=1, max_length=queries.MAX_ID_CHARS, pattern=r"^[^\x00]*$")
    ],
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> ConversationDetail:
    visible = visible_emails(principal)
    count, last = queries.thread_totals(session, conversation_id, visible)
    if count == 0 or last is None:
        raise NotFoundError(f"no conversation {conversation_id!r}")
    emails, next_cursor = queries.thread_emails(
        session,
        conversation_id,
        visible=visible,
        cursor=_cursor(cursor, int),
        limit=limit,
    )
    return ConversationDetail.model_validate(
        {
            "id": conversation_id,
            "subject": emails[0].subject if emails else None,
            "participants": queries.participants(session, conversation_id, visible),
            "email_count": count,
            "last_activity_at": last,
            "emails": [thread_email(e) for e in emails],
            "next_cursor": next_cursor,
        }
    )
