"""Attachments and filenames: Mandrill's entries matched to the MIME parts, the parts it
did not deliver, and names made safe to store and show."""

from __future__ import annotations

import binascii
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from worker.ingest import columns
from worker.ingest.parsing import tnef
from worker.ingest.parsing.mime import (
    DEFAULT_CONTENT_TYPE,
    MimePart,
    content_id_of,
    is_attached,
    is_inline,
)
from worker.ingest.parsing.types import (
    EmailLimits,
    LimitExceededError,
    ParsedAttachment,
    PermanentEventError,
)
from worker.ingest.parsing.values import json_type, opt_nonblank, sha256_bytes

# Long enough for any real extension ("tar.gz" is handled as "gz"), short enough that a name
# made of one huge "extension" is truncated as a whole instead.
_MAX_EXTENSION_CHARS: Final = 16
_LEADING_DOTS_AND_BLANKS: Final = re.compile(r"^[.\s]+")


def sanitize_filename(name: object, fallback: str) -> str:
    """Make a sender-chosen attachment name safe to store and show, or return ``fallback``."""
    return _clean_filename(name) or fallback


def check_entry_count(msg: Mapping[str, Any], limits: EmailLimits) -> None:
    """Mandrill's own attachment and image entries, counted before any is decoded."""
    entries = sum(
        len(value) for name in ("attachments", "images") if isinstance(value := msg.get(name), dict)
    )
    if entries > limits.max_attachments:
        raise LimitExceededError("attachments", entries, limits.max_attachments, "attachments")


def collect_attachments(
    msg: Mapping[str, Any], parts: list[MimePart], limits: EmailLimits
) -> tuple[ParsedAttachment, ...]:
    pool = _PartPool([part for part in parts if is_attached(part)])
    found: list[ParsedAttachment] = []
    for field_name, is_image in (("attachments", False), ("images", True)):
        for position, (key, entry) in enumerate(_entries(msg, field_name), start=1):
            where = f"msg.{field_name} entry #{position}"
            found.append(
                _from_entry(where, key, entry, is_image=is_image, pool=pool, number=len(found) + 1)
            )
    # Whatever Mandrill did not deliver (nested parts of forwarded mail, parts it skipped).
    remaining = pool.remaining()
    if len(found) + len(remaining) > limits.max_attachments:
        raise LimitExceededError(
            "attachments", len(found) + len(remaining), limits.max_attachments, "attachments"
        )
    for part in remaining:
        found.append(_from_part(part, len(found) + 1))
    # Outlook's winmail.dat: the files it hides become attachments of their own, after it.
    for wrapper in [a for a in found if _is_tnef(a)]:
        for name, content_type, data in tnef.unwrap(wrapper.content):
            if len(found) >= limits.max_attachments:
                raise LimitExceededError(
                    "attachments", len(found) + 1, limits.max_attachments, "attachments"
                )
            found.append(
                _attachment(
                    _clean_filename(name) or _fallback_name(len(found) + 1),
                    content_type,
                    data,
                    None,
                    False,
                    sha256=sha256_bytes(data),
                )
            )
    return tuple(found)


def _is_tnef(attachment: ParsedAttachment) -> bool:
    declared = attachment.content_type.split(";", 1)[0].strip().lower()
    named = attachment.filename.lower() == "winmail.dat"
    typed = declared in ("application/ms-tnef", "application/vnd.ms-tnef")
    return (named or typed) and tnef.is_tnef(attachment.content)


class _PartPool:
    """The attachment MIME parts that no Mandrill entry has claimed yet, in document order.

    Each part covers at most one entry: two different files may share a name (every iPhone
    photo is "image.jpeg"), and a name match must not hide the second one.
    """

    def __init__(self, parts: list[MimePart]) -> None:
        self._unused = list(parts)

    def find(self, digest: str, content_id: str | None, filename: str | None) -> MimePart | None:
        """The part that is this entry: same bytes, else same Content-ID, else same name."""
        for part in self._unused:
            if part.sha256 == digest:
                return part
        for part in self._unused:
            if content_id is not None and part.content_id == content_id:
                return part
        for part in self._unused:
            if filename is not None and _clean_filename(part.filename) == filename:
                return part
        return None

    def claim(self, part: MimePart | None) -> None:
        if part is not None:
            # By identity: two parts can be equal field for field (the same file twice).
            self._unused = [other for other in self._unused if other is not part]

    def remaining(self) -> list[MimePart]:
        return list(self._unused)


def _entries(msg: Mapping[str, Any], field_name: str) -> list[tuple[str, dict[str, Any]]]:
    value = msg.get(field_name)
    # PHP encodes an empty associative array as [], the same trap as "headers": [].
    if value is None or value == []:
        return []
    if not isinstance(value, dict):
        raise PermanentEventError(f"msg.{field_name} is not a JSON object (got {json_type(value)})")
    entries: list[tuple[str, dict[str, Any]]] = []
    for position, (key, entry) in enumerate(value.items(), start=1):
        if not isinstance(entry, dict):
            raise PermanentEventError(
                f"msg.{field_name} entry #{position} is not a JSON object (got {json_type(entry)})"
            )
        entries.append((str(key), entry))
    return entries


def _from_entry(
    where: str,
    key: str,
    entry: Mapping[str, Any],
    *,
    is_image: bool,
    pool: _PartPool,
    number: int,
) -> ParsedAttachment:
    content = entry.get("content")
    if not isinstance(content, str):
        raise PermanentEventError(f"{where} content is not a string (got {json_type(content)})")
    flag = entry.get("base64")
    if flag is not None and not isinstance(flag, bool):
        raise PermanentEventError(f"{where} base64 flag is not a boolean (got {json_type(flag)})")
    declared = entry.get("name") if isinstance(entry.get("name"), str) else None
    wanted_name = _clean_filename(declared if declared is not None else key)
    key_cid = content_id_of(key) if is_image else None

    part: MimePart | None = None
    if flag is True or (is_image and flag is None):
        # Images never carry the flag and are always base64.
        data = _decode_base64(content, where)
        digest = sha256_bytes(data)
    else:
        # base64 false or no flag: Mandrill hands over text decoded from the attachment's
        # charset; the MIME part of the same name holds the bytes the sender attached.
        data = content.encode("utf-8", "surrogatepass")
        digest = sha256_bytes(data)
        part = pool.find(digest, None, wanted_name)
        if part is not None:
            data, digest = part.data, part.sha256
    if part is None:
        part = pool.find(digest, key_cid, wanted_name)
    pool.claim(part)

    # An images key is a Content-ID when a part has that Content-ID, or when it differs from
    # the entry's name and no part tells us otherwise.
    keyed_by_cid = key_cid is not None and (
        (part is not None and part.content_id == key_cid)
        or (part is None and declared is not None and declared != key)
    )
    content_id = part.content_id if part is not None and part.content_id else None
    if content_id is None and keyed_by_cid:
        content_id = key_cid
    filename = (
        wanted_name
        or _clean_filename(part.filename if part is not None else None)
        or (None if keyed_by_cid else _clean_filename(key))
        or _fallback_name(number)
    )
    if is_image:
        # Mandrill files every image under "images", also ones sent as ordinary attachments
        # (inbound_with_image.json): the part's explicit disposition wins over the default.
        inline = part is None or part.disposition != "attachment"
    else:
        inline = part is not None and is_inline(part)
    content_type = _content_type(entry.get("type"), part)
    return _attachment(filename, content_type, data, content_id, inline, sha256=digest)


def _from_part(part: MimePart, number: int) -> ParsedAttachment:
    return _attachment(
        _clean_filename(part.filename) or _fallback_name(number),
        part.content_type or DEFAULT_CONTENT_TYPE,
        part.data,
        part.content_id,
        is_inline(part),
        sha256=part.sha256,
    )


def _attachment(
    filename: str,
    content_type: str,
    data: bytes,
    content_id: str | None,
    inline: bool,
    *,
    sha256: str,
) -> ParsedAttachment:
    # sha256 is the digest of data the caller already has (matching parts needs it).
    return ParsedAttachment(
        filename=filename,
        content_type=content_type,
        content=data,
        sha256=sha256,
        size=len(data),
        content_id=content_id,
        inline=inline,
    )


def _decode_base64(content: str, where: str) -> bytes:
    # Line breaks are legal in base64 transports; anything else outside the alphabet is not.
    # b64decode(s, validate=True) is a2b_base64(s, strict_mode=True) on s as bytes; called
    # directly, a2b_base64 reads an ASCII str's own buffer. Tried first on the content as
    # it is (Mandrill sends it without line breaks), which spares three transient copies
    # of a 24 MB attachment; strict mode refuses whitespace, so content that has some is
    # decoded as before, without it. Same bytes, same refusals.
    try:
        return binascii.a2b_base64(content, strict_mode=True)
    except ValueError:
        pass
    compact = "".join(content.split())
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII characters in the str
        raise PermanentEventError(f"{where} content is not valid base64") from exc


def _content_type(declared: object, part: MimePart | None) -> str:
    content_type = opt_nonblank(declared)
    if content_type is None and part is not None:
        content_type = part.content_type
    return (content_type or DEFAULT_CONTENT_TYPE)[: columns.CONTENT_TYPE_CHARS]


def _fallback_name(number: int) -> str:
    return f"attachment-{number}"


# --------------------------------------------------------------------------- filenames


def _clean_filename(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    # Senders' clients put paths in names; either separator may come from either platform.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    # Category C: controls, format characters (e.g. the right-to-left override used to
    # disguise extensions), lone surrogates, private use and unassigned code points.
    base = "".join(char for char in base if not unicodedata.category(char).startswith("C"))
    # Leading dots would make hidden files or "." / ".."; blanks among them go too. One
    # match of the leading run, not a strip per dot: that is quadratic on ". . . .".
    base = _LEADING_DOTS_AND_BLANKS.sub("", base.rstrip(), count=1)
    if len(base) > columns.FILENAME_CHARS:
        base = _truncate_filename(base)
    return base or None


def _truncate_filename(name: str) -> str:
    stem, dot, extension = name.rpartition(".")
    if dot and stem and len(extension) <= _MAX_EXTENSION_CHARS:
        # Keep the extension: it is what tells people and programs how to open the file.
        keep = columns.FILENAME_CHARS - len(extension) - 1
        return f"{stem[:keep].rstrip()}.{extension}"
    return name[: columns.FILENAME_CHARS].rstrip()
