"""``/api/v1/emails``: search stored emails, read one, download the original message."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from api.access.mailboxes import visible_emails
from api.access.policies import Admin, MailReader, read_mail
from api.attachments.schemas import AttachmentOut
from api.deps import ObjectStoreDep, SessionDep, SettingsDep
from api.downloads import stored_download
from api.emails import queries
from api.emails.queries import EmailFilters
from api.emails.schemas import EmailDetail, EmailPage, EmailSummary, ErasureOut
from api.openapi import API_ERRORS, error_responses
from api.pagination import DEFAULT_PAGE_SIZE, CursorParam, PageSize, parse_cursor
from api.params import IdPath, Instant, since_filter, text_filter, until_filter
from api.quarantine import refuse_quarantined
from shared.contract import attachment_text_url
from shared.lifecycle.erase import NothingToEraseError, erase
from shared.models import Attachment, Email
from shared.web.errors import NotFoundError

router = APIRouter(
    prefix="/emails",
    tags=["emails"],
    dependencies=[Depends(read_mail)],
    responses=error_responses(*API_ERRORS),
)


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        id=attachment.id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
        inline=attachment.inline,
        content_id=attachment.content_id,
        sniffed_type=attachment.sniffed_type,
        type_mismatch=attachment.type_mismatch,
        scan_status=attachment.scan_status,
        content_url=f"/api/v1/attachments/{attachment.id}/content",
        text_status=attachment.text_status,
        text_excerpt=attachment.text_excerpt,
        text_url=attachment_text_url(attachment.id, attachment.text_status, attachment.scan_status),
    )


def _summary(email: Email, attachment_count: int) -> EmailSummary:
    return EmailSummary.model_validate(
        {**_columns(email, EmailSummary), "attachment_count": attachment_count}
    )


def _columns(email: Email, model: type[EmailSummary]) -> dict[str, object]:
    fields = set(model.model_fields) - {"attachment_count", "attachments", "raw_url"}
    return {name: getattr(email, name) for name in fields}


@router.get(
    "",
    summary="Search emails",
    description=(
        "Stored emails, newest first, without bodies (fetch one for those). Filters "
        "combine with AND. Addresses match case-insensitively and exactly: `recipient` "
        "matches the envelope recipient or any To/Cc address. `max_spam_score` leaves out "
        "emails without a score. Pages: pass `next_cursor` back as `cursor` until it is null."
    ),
    response_model=EmailPage,
)
def list_emails(
    session: SessionDep,
    principal: MailReader,
    *,
    sender: Annotated[str | None, text_filter("The From address.")] = None,
    recipient: Annotated[str | None, text_filter("Envelope recipient, To or Cc address.")] = None,
    subject: Annotated[str | None, text_filter("Text the subject contains (any case).")] = None,
    since: Annotated[Instant | None, since_filter("emails received")] = None,
    until: Annotated[Instant | None, until_filter("emails received")] = None,
    has_attachments: Annotated[
        bool | None, Query(description="Only emails with (true) or without (false) any.")
    ] = None,
    spf: Annotated[
        str | None, text_filter("Mandrill's SPF result: pass, fail, softfail, neutral…", 32)
    ] = None,
    max_spam_score: Annotated[
        float | None, Query(allow_inf_nan=False, description="Spam score at most this.")
    ] = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    cursor: CursorParam = None,
) -> EmailPage:
    filters = EmailFilters(
        sender=sender,
        recipient=recipient,
        subject=subject,
        since=since,
        until=until,
        has_attachments=has_attachments,
        spf_result=spf,
        max_spam_score=max_spam_score,
    )
    page, counts = queries.list_emails(
        session,
        filters,
        cursor=parse_cursor(cursor, int),
        limit=limit,
        visible=visible_emails(principal),
    )
    return EmailPage(
        items=[_summary(email, counts.get(email.id, 0)) for email in page.rows],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{email_id}",
    summary="Read an email",
    description=(
        "Every parsed field: addresses (from the raw message, not Mandrill's split), "
        "bodies, headers, Mandrill's spam, SPF and DKIM verdicts, and the attachments "
        "with their download URLs."
    ),
    response_model=EmailDetail,
    responses=error_responses(404),
)
def get_email(email_id: IdPath, session: SessionDep, principal: MailReader) -> EmailDetail:
    email = queries.get_email(session, email_id, visible=visible_emails(principal))
    if email is None:
        raise NotFoundError(f"no email {email_id}")
    return EmailDetail.model_validate(
        {
            **_columns(email, EmailDetail),
            "attachment_count": len(email.attachments),
            "attachments": [attachment_out(a) for a in email.attachments],
            "raw_url": f"/api/v1/emails/{email.id}/raw",
        }
    )


@router.get(
    "/{email_id}/raw",
    summary="Download the original message",
    description=(
        "The raw message exactly as Mandrill delivered it (UTF-8), as `message/rfc822`, "
        "for a mail client or a forensic look at headers. Always a download: "
        "`Content-Disposition: attachment`. Refused (409) when an attachment of it is "
        "quarantined by the malware scan: the message carries its bytes."
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The message.",
            "content": {
                "message/rfc822": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "From: Ana <ana@example.org>\r\nSubject: Hi\r\n\r\nHello\r\n",
                }
            },
        },
        **error_responses(404, 409),
    },
)
def get_raw_email(
    email_id: IdPath, session: SessionDep, store: ObjectStoreDep, principal: MailReader
) -> Response:
    email = queries.get_email(session, email_id, visible=visible_emails(principal))
    if email is None:
        raise NotFoundError(f"no email {email_id}")
    if email.raw_removed_at is not None:
        raise NotFoundError(
            f"the raw message of email {email_id} was removed by the retention policy on "
            f"{email.raw_removed_at:%Y-%m-%d}; the parsed fields remain"
        )
    # The raw message holds every attachment's bytes.
    refuse_quarantined(email.attachments, f"the raw message of email {email_id}")
    return stored_download(
        store,
        email.raw_key,
        email.raw_sha256,
        size=email.raw_size,
        filename=f"email-{email_id}.eml",
        media_type="message/rfc822",
        what=f"the raw message of email {email_id}",
    )


@router.delete(
    "/{email_id}",
    summary="Erase an email (admin only)",
    description=(
        "Erases the email and its raw message, its attachments unless another email still "
        "names the same content, and the raw webhook archive of every delivery that "
        "brought it (those deliveries can never be replayed, retried or reprocessed). The "
        "objects are deleted before the answer, whatever their age. An `erasures` record "
        "keeps who, when and counts, never the content. To erase everything that mentions "
        "an address, use `kave erase --address`."
    ),
    response_model=ErasureOut,
    responses=error_responses(403, 404, 409),
)
def erase_email(
    email_id: IdPath, admin: Admin, request: Request, settings: SettingsDep
) -> ErasureOut:
    try:
        result = erase(
            request.app.state.session_factory,
            request.app.state.object_store,
            actor=admin.actor,
            grace_seconds=settings.orphan_grace_seconds,
            email_id=email_id,
            redis=request.app.state.blocking_redis,
        )
    except NothingToEraseError:
        raise NotFoundError(f"no email {email_id}") from None
    return ErasureOut(
        erasure_id=result.erasure_id,
        emails=result.counts["emails"],
        attachments=result.counts["attachments"],
        archives=result.counts["archives"],
        objects_deleted=result.objects.deleted,
        objects_still_referenced=result.objects.still_referenced,
        objects_deferred=result.objects.deferred,
    )
