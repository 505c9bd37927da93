"""``/api/v1/attachments/{id}/content``: an attachment's bytes; ``.../text``: its text."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.access.mailboxes import may_see
from api.access.policies import MailReader, read_mail
from api.attachments import queries
from api.deps import ObjectStoreDep, SessionDep
from api.downloads import safe_media_type, stored_download, text_download
from api.openapi import API_ERRORS, error_responses
from api.params import IdPath
from api.quarantine import refuse_quarantined
from shared.contract import text_object_key
from shared.models import Attachment
from shared.web.errors import NotFoundError

router = APIRouter(
    prefix="/attachments",
    tags=["emails"],
    dependencies=[Depends(read_mail)],
    responses=error_responses(*API_ERRORS),
)


@router.get(
    "/{attachment_id}/content",
    summary="Download an attachment",
    description=(
        "The attachment's bytes, checked against its sha256 before they are sent (also "
        "the `ETag`). Always a download, never rendered: `Content-Disposition: attachment`, "
        "`X-Content-Type-Options: nosniff` and a sandboxing CSP, because the content "
        "and its declared type come from whoever sent the email. The filename is the "
        "sanitised one (`filename*` carries it exactly, UTF-8). An attachment the "
        "malware scan quarantined is refused (409)."
    ),
    response_class=Response,
    responses={
        200: {
            "description": (
                "The bytes, typed as the email declared them (application/octet-stream when "
                "that type is malformed)."
            ),
            "content": {
                "*/*": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "%PDF-1.4 …",
                }
            },
        },
        **error_responses(404, 409),
    },
)
def get_attachment_content(
    attachment_id: IdPath, session: SessionDep, store: ObjectStoreDep, principal: MailReader
) -> Response:
    attachment = _servable_attachment(session, attachment_id, principal)
    refuse_quarantined([attachment], f"the content of attachment {attachment_id}")
    return stored_download(
        store,
        attachment.object_key,
        attachment.sha256,
        size=attachment.size,
        filename=attachment.filename,
        media_type=safe_media_type(attachment.content_type),
        what=f"the content of attachment {attachment_id}",
    )


@router.get(
    "/{attachment_id}/text",
    summary="Read an attachment's text",
    description=(
        "The attachment's text as Markdown (tables as Markdown tables), once its "
        "`text_status` is `ready`: 404 says the status otherwise. Served like a download: "
        "`Content-Disposition: attachment`, `X-Content-Type-Options: nosniff`, a sandboxing "
        "CSP and an `ETag` (the text's sha256), since the text comes from whoever sent "
        "the email."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The text, UTF-8 Markdown.",
            "content": {"text/markdown": {"example": "# Invoice 4711\n\n| item | amount |"}},
        },
        **error_responses(404, 409),
    },
)
def get_attachment_text(
    attachment_id: IdPath, session: SessionDep, store: ObjectStoreDep, principal: MailReader
) -> Response:
    attachment = _servable_attachment(session, attachment_id, principal)
    refuse_quarantined([attachment], f"the text of attachment {attachment_id}")
    if attachment.text_status != "ready":
        raise NotFoundError(
            f"attachment {attachment_id} has no text: its text status is "
            f"{attachment.text_status or 'unset (stored before text existed)'}"
        )
    return text_download(
        store,
        text_object_key(attachment.sha256),
        filename=f"{attachment.filename}.md",
        what=f"the text of attachment {attachment_id}",
    )


def _servable_attachment(
    session: SessionDep, attachment_id: int, principal: MailReader
) -> Attachment:
    """The attachment if the caller may see its email and its content was not removed by
    retention; 404 otherwise (an attachment of another mailbox does not exist for it)."""
    attachment = queries.get_attachment(session, attachment_id)
    if attachment is None or not may_see(principal, attachment.email):
        raise NotFoundError(f"no attachment {attachment_id}")
    if attachment.content_removed_at is not None:
        raise NotFoundError(
            f"the content of attachment {attachment_id} was removed by the retention policy "
            f"on {attachment.content_removed_at:%Y-%m-%d}"
        )
    return attachment
