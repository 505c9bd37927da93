"""An inbound event into a :class:`ParsedEmail`: raw_msg is the truth, Mandrill's fields
the fallbacks; verdicts and tags read as they come."""

from __future__ import annotations

from typing import Any

from worker.ingest.columns import storable_text
from worker.ingest.parsing.attachments import check_entry_count, collect_attachments
from worker.ingest.parsing.headers import (
    HeaderBudget,
    address_list,
    all_headers,
    date_of,
    first_message_id_of,
    header_text,
    id_header,
    message_id_of,
    message_ids_of,
    sender,
)
from worker.ingest.parsing.mime import (
    MimePart,
    check_mime_shape,
    headers_refuse_charset,
    is_attached,
    mime_parts,
    parse_mime,
)
from worker.ingest.parsing.types import (
    DEFAULT_LIMITS,
    EmailLimits,
    ParsedEmail,
    PermanentEventError,
    SpamRule,
)
from worker.ingest.parsing.values import (
    json_type,
    opt_bool,
    opt_float,
    opt_nonblank,
    opt_str,
    sha256_bytes,
    timestamp,
)


def parse_inbound(event: Any, limits: EmailLimits = DEFAULT_LIMITS) -> ParsedEmail:
    """Parse an inbound event into a :class:`ParsedEmail`.

    Raises :class:`PermanentEventError` when the event cannot be turned into an email
    (:class:`LimitExceededError` when it is over one of ``limits``). Any other exception
    is a bug here; the caller (worker.ingest.commit) turns it into a permanent failure that
    names the failing line, since the same input would fail the same way.
    """
    msg, raw_msg = _inbound_shape(event)
    return _parse_inbound(event, msg, raw_msg, limits)


def _inbound_shape(event: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(event, dict):
        raise PermanentEventError(f"event is not a JSON object (got {json_type(event)})")
    if "msg" not in event or event["msg"] is None:
        raise PermanentEventError("inbound event has no msg")
    msg = event["msg"]
    if not isinstance(msg, dict):
        raise PermanentEventError(f"msg is not a JSON object (got {json_type(msg)})")
    raw_msg = msg.get("raw_msg")
    if not isinstance(raw_msg, str):
        raise PermanentEventError(f"msg.raw_msg is not a string (got {json_type(raw_msg)})")
    return msg, raw_msg


def _parse_inbound(
    event: dict[str, Any], msg: dict[str, Any], raw_msg: str, limits: EmailLimits
) -> ParsedEmail:
    # surrogatepass: a JSON "\ud800" escape is legal JSON but not encodable as UTF-8; keeping
    # it losslessly beats failing the email. For any valid string this is plain UTF-8.
    raw = raw_msg.encode("utf-8", "surrogatepass")
    # Cheap checks first: the full parse of a parts bomb alone costs seconds.
    check_mime_shape(raw, limits)
    check_entry_count(msg, limits)
    message = parse_mime(raw, limits.max_mime_parts)
    parts = mime_parts(message, limits)
    budget = HeaderBudget()
    from_address, from_name = sender(message, msg, budget)
    spam_score, spam_rules = _spam_report(msg.get("spam_report"))
    spf_result, spf_detail = _spf(msg.get("spf"))
    dkim_signed, dkim_valid = _dkim(msg.get("dkim"))
    subject = header_text(message, "Subject")
    return ParsedEmail(
        message_id=message_id_of(id_header(message, msg, "Message-ID")),
        raw=raw,
        raw_sha256=sha256_bytes(raw),
        envelope_recipient=opt_nonblank(msg.get("email")),
        from_address=from_address,
        from_name=from_name,
        to=address_list(message, "To", budget),
        cc=address_list(message, "Cc", budget),
        bcc=address_list(message, "Bcc", budget),
        reply_to=address_list(message, "Reply-To", budget),
        subject=subject if subject is not None else opt_str(msg.get("subject")),
        sent_at=date_of(id_header(message, msg, "Date")),
        in_reply_to=first_message_id_of(id_header(message, msg, "In-Reply-To")),
        references=message_ids_of(id_header(message, msg, "References")),
        text_body=_body(msg.get("text"), parts, "text/plain"),
        html_body=_body(msg.get("html"), parts, "text/html"),
        headers=all_headers(message, budget),
        tags=_tags(msg.get("tags")),
        spam_score=spam_score,
        spam_rules=spam_rules,
        spf_result=spf_result,
        spf_detail=spf_detail,
        dkim_signed=dkim_signed,
        dkim_valid=dkim_valid,
        mandrill_ts=timestamp(event.get("ts")),
        attachments=collect_attachments(msg, parts, limits),
        charset_refused=any(part.charset_refused for part in parts)
        or headers_refuse_charset(message),
    )


def _body(mandrill_value: object, parts: list[MimePart], content_type: str) -> str | None:
    if isinstance(mandrill_value, str):
        return storable_text(mandrill_value)
    # Missing or null in the payload: the first matching body part of raw_msg. Parts inside a
    # forwarded message are that message's body, not this one's.
    for part in parts:
        if part.content_type == content_type and not part.nested and not is_attached(part):
            return part.text
    return None


# --------------------------------------------------------------------------- verdicts, tags


def _spam_report(value: object) -> tuple[float | None, tuple[SpamRule, ...]]:
    if not isinstance(value, dict):
        return None, ()
    rules = value.get("matched_rules")
    parsed = tuple(
        SpamRule(
            name=opt_str(rule.get("name")),
            score=opt_float(rule.get("score")),
            description=opt_str(rule.get("description")),
        )
        for rule in (rules if isinstance(rules, list) else [])
        if isinstance(rule, dict)
    )
    return opt_float(value.get("score")), parsed


def _spf(value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, dict):
        return None, None
    return opt_str(value.get("result")), opt_str(value.get("detail"))


def _dkim(value: object) -> tuple[bool | None, bool | None]:
    if not isinstance(value, dict):
        return None, None
    return opt_bool(value.get("signed")), opt_bool(value.get("valid"))


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(storable_text(tag) for tag in value if isinstance(tag, str))
