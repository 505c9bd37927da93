"""The conversion child: ``python -m worker.text.child MIME MAX_PAGES MAX_CHARACTERS``.

Reads the document from stdin, converts it with kreuzberg to Markdown and writes one JSON
object to stdout: ``{"status", "pages", "text"}`` (``text`` only when ``ready``), or
``{"status": "failed", "error": <exception class>}``. It runs under the limits its parent
(``worker.text.convert``) set before exec: address space, CPU time, no files written; the
parent kills it at the wall-time bound. Nothing here touches the database or the store,
and nothing of the document reaches stderr (an exception's text may quote it).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def convert(data: bytes, mime_type: str, max_pages: int, max_characters: int) -> dict[str, Any]:
    import kreuzberg

    # disable_ocr (absent from the stubs, present at run time): no OCR engine, no model,
    # nothing downloaded; an image-only page gives no text.
    config = kreuzberg.ExtractionConfig(  # type: ignore[call-arg]
        output_format="markdown", use_cache=False, disable_ocr=True
    )
    try:
        result = kreuzberg.extract_bytes_sync(data, mime_type, config=config)
    except MemoryError:
        return {"status": "skipped:memory"}
    except Exception as exc:  # the converter's verdict on this document
        return {"status": "failed", "error": type(exc).__name__}
    metadata = result.metadata if isinstance(result.metadata, dict) else {}
    pages = metadata.get("page_count")
    pages = pages if isinstance(pages, int) else None
    if pages is not None and pages > max_pages:
        return {"status": "skipped:pages", "pages": pages}
    text = (result.content or "").strip()
    if len(text) > max_characters:
        return {"status": "skipped:output", "pages": pages}
    if not text:
        return {"status": "skipped:no_text", "pages": pages}
    return {"status": "ready", "pages": pages, "text": text}


def main() -> None:
    mime_type, max_pages, max_characters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = sys.stdin.buffer.read()
    try:
        outcome = convert(data, mime_type, max_pages, max_characters)
    except MemoryError:
        outcome = {"status": "skipped:memory"}
    sys.stdout.write(json.dumps(outcome, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
