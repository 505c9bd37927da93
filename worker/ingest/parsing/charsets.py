"""Which sender-declared charsets text is decoded with: real mail charsets only.

Role: a sender names the charset of every text part (``Content-Type: ...; charset=``),
of every RFC 2047 encoded word in a header (``=?charset?q?...?=``) and of every RFC 2231
parameter (``filename*=charset'lang'...``), and Python resolves any such name to any of
its codecs. Some of those are not mail charsets and are costly or unsafe on hostile
input: ``punycode`` decodes in quadratic time, ``idna`` and ``utf-7`` are as sender-
shaped, the ``*_escape`` codecs turn backslash sequences into arbitrary characters, and
the bytes-to-bytes codecs (base64, zlib, ...) are not text at all. So text is decoded
only with a codec on :data:`MAIL_CODECS`; a part or header naming another codec is
*refused*: it is read as unknown 8-bit data instead (see :func:`decode_text` and
:func:`neutralize_header`) and the parsed email says so (``charset_refused``).

A name Python does not know at all (``unknown-8bit``, ``x-user-defined``) is not refused:
it never reaches a codec, and the parser already treats it as unknown 8-bit data.
Pure, no I/O.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache
from typing import Final

__all__ = [
    "MAIL_CODECS",
    "UNKNOWN_8BIT",
    "decode_text",
    "is_refused",
    "mail_codec",
    "neutralize_header",
]

# Codec names as codecs.lookup(...).name gives them, so every alias of an allowed charset
# ("latin1", "ISO_8859-1:1987", "l1") is allowed through its codec: the IANA charsets mail
# is written in. Unicode, and the Chinese, Japanese, Korean and Thai national sets here;
# the single-byte code page families (ISO 8859, Windows and DOS "cp", Mac, KOI8) and the
# ISO 2022 families by prefix (:data:`_MAIL_CODEC_FAMILIES`).
MAIL_CODECS: Final = frozenset(
    {
        "ascii",
        "utf-8",
        "utf-8-sig",
        "utf-16",
        "utf-16-be",
        "utf-16-le",
        "utf-32",
        "utf-32-be",
        "utf-32-le",
        "kz1048",
        "ptcp154",
        "gb2312",
        "gbk",
        "gb18030",
        "hz",
        "big5",
        "big5hkscs",
        "shift_jis",
        "shift_jis_2004",
        "shift_jisx0213",
        "euc_jp",
        "euc_jis_2004",
        "euc_jisx0213",
        "euc_kr",
        "johab",
        "tis-620",
    }
)
# Every codec of these families is a table of one or two bytes per character.
_MAIL_CODEC_FAMILIES: Final = ("iso8859-", "cp", "mac-", "koi8-", "iso2022_")
# What a refused charset is replaced with in headers: the stdlib's own name for bytes of
# an unknown charset (it decodes them as ASCII with surrogate escapes, no codec involved).
UNKNOWN_8BIT: Final = "unknown-8bit"
# Longer names are not charsets; they are refused without a lookup (the lookup drops
# punctuation and non-ASCII letters, so a padded "punycode" would still find that codec).
_MAX_LABEL_CHARS: Final = 64

# "=?charset?" of an encoded word (RFC 2047; a "*language" suffix is allowed, RFC 2231 5),
# and "*=charset'" of an extended parameter (RFC 2231 4). Each "[^...]*" stops at the
# first delimiter, so a scan is linear in the header.
_ENCODED_WORD_CHARSET: Final = re.compile(r"=\?([^?]*)\?")
_PARAMETER_CHARSET: Final = re.compile(r"""\*[ \t]*=[ \t]*"?([^'"\s;=]*)'""")


@lru_cache(maxsize=1024)
def _lookup(label: str) -> str | None:
    """The codec a charset name resolves to; None for a name no codec has."""
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def mail_codec(label: str | None) -> str | None:
    """The codec to decode text declared as ``label`` with, or None when ``label`` is
    missing, unknown to Python or refused (:func:`is_refused` tells those apart)."""
    if not label or len(label) > _MAX_LABEL_CHARS:
        return None
    name = _lookup(label.strip().lower())
    return name if name is not None and _is_mail_codec(name) else None


def is_refused(label: str | None) -> bool:
    """Whether ``label`` names a codec that is not a mail charset (or is too long to be a
    charset name): text declared with it must not reach that codec."""
    if not label:
        return False
    if len(label) > _MAX_LABEL_CHARS:
        return True
    name = _lookup(label.strip().lower())
    return name is not None and not _is_mail_codec(name)


def _is_mail_codec(name: str) -> bool:
    return name in MAIL_CODECS or name.startswith(_MAIL_CODEC_FAMILIES)


def decode_text(data: bytes, label: str | None) -> tuple[str, bool]:
    """``data`` decoded as ``label`` says, with replacement characters for bad bytes, and
    whether ``label`` was refused. Bytes of a refused or unknown charset are read as
    UTF-8 with replacement: most mail is UTF-8 or ASCII (and the refused codecs all encode
    into ASCII, which UTF-8 shows as it is), and what is not shows as U+FFFD, visibly,
    rather than as plausible wrong letters (Latin-1 would never fail, and so never tell)."""
    codec = mail_codec(label) or "utf-8"
    return data.decode(codec, "replace"), is_refused(label)


def neutralize_header(value: str) -> tuple[str, bool]:
    """``value`` with every refused charset name of its encoded words and extended
    parameters replaced by ``unknown-8bit``, and whether there was one. The stdlib's
    header parser then decodes those as unknown 8-bit data, without the codec."""
    if "=?" not in value and "'" not in value:
        return value, False
    refused = False

    def replace(match: re.Match[str]) -> str:
        nonlocal refused
        label = match.group(1).partition("*")[0]
        if not is_refused(label):
            return match.group(0)
        refused = True
        start, end = match.span(1)
        whole = match.group(0)
        offset = match.start()
        return whole[: start - offset] + UNKNOWN_8BIT + whole[end - offset :]

    value = _ENCODED_WORD_CHARSET.sub(replace, value)
    if "'" in value:
        value = _PARAMETER_CHARSET.sub(replace, value)
    return value, refused
