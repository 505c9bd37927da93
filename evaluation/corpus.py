"""Reading a corpus folder: its messages and their labels (``labels.json``).

``labels.json`` is one object::

    {
      "messages": [
        {"file": "reply-01.eml", "category": "reply", "client": "gmail", "language": "en",
         "labels": {"reply_text": "...", "auto_submitted": false}},
        ...
      ],
      "threads": [{"name": "...", "files": ["a.eml", "b.eml"]}]
    }

``labels`` names only the fields that were labelled; a field absent there is not scored.
``category`` is one of :data:`CATEGORIES`. A thread lists its messages in the order they
were sent (the order a stored-parent lookup sees them in). A thread is a *modern* one
(what the acceptance figure "modern threads joined" counts) unless it says
``"threading_headers": false``: every reply in a modern thread names an earlier message
in ``In-Reply-To`` or ``References``, as RFC 5322 section 3.6.4 asks of every client; a
thread marked false has a reply that names none (joined by its subject alone, if at all)
and is scored in rows of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

CORPORA_DIR: Final = Path(__file__).parent / "corpora"
LABELS_FILE: Final = "labels.json"
SOURCE_FILE: Final = "SOURCE.md"
CATEGORIES: Final = frozenset(
    {"reply", "bounce", "auto_reply", "list", "one_to_one", "thread", "other"}
)
# The fields a label may name; a label of another name is an error, not silently unscored.
FIELDS: Final = frozenset(
    {
        "reply_text",
        "forwarded_text",
        "auto_submitted",
        "bulk",
        "bounced_addresses",
        "conversation_id",
        "mailbox_hash",
    }
)


class CorpusError(ValueError):
    """A corpus folder that is not well-formed (a missing file, an unknown field...)."""


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    category: str
    labels: dict[str, Any]
    client: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Thread:
    name: str
    files: tuple[str, ...]
    threading_headers: bool = True


@dataclass(frozen=True, slots=True)
class Corpus:
    name: str
    path: Path
    cases: tuple[Case, ...]
    threads: tuple[Thread, ...] = field(default=())

    def raw(self, file: str) -> str:
        """A message as Mandrill hands it over: text, undecodable bytes replaced."""
        return (self.path / file).read_bytes().decode("utf-8", errors="replace")


def load_corpus(path: Path) -> Corpus:
    """One corpus folder, checked: every label names an existing file and a known field."""
    try:
        document = json.loads((path / LABELS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CorpusError(f"{path.name}: cannot read {LABELS_FILE}: {exc}") from exc
    cases = tuple(_case(path, entry) for entry in document.get("messages", []))
    threads = tuple(
        Thread(
            name=str(entry["name"]),
            files=tuple(_existing(path, f) for f in entry["files"]),
            threading_headers=bool(entry.get("threading_headers", True)),
        )
        for entry in document.get("threads", [])
    )
    if not (path / SOURCE_FILE).is_file():
        raise CorpusError(f"{path.name}: no {SOURCE_FILE}")
    return Corpus(name=path.name, path=path, cases=cases, threads=threads)


def _existing(path: Path, file: str) -> str:
    if not (path / file).is_file():
        raise CorpusError(f"{path.name}: {file} is labelled but missing")
    return file


def _case(path: Path, entry: dict[str, Any]) -> Case:
    file = _existing(path, str(entry["file"]))
    category = str(entry.get("category", "other"))
    if category not in CATEGORIES:
        raise CorpusError(f"{path.name}/{file}: unknown category {category!r}")
    labels = dict(entry.get("labels", {}))
    unknown = set(labels) - FIELDS
    if unknown:
        raise CorpusError(f"{path.name}/{file}: unknown fields {sorted(unknown)}")
    return Case(
        file=file,
        category=category,
        labels=labels,
        client=entry.get("client"),
        language=entry.get("language"),
    )


def corpus_dirs(roots: list[Path]) -> list[Path]:
    """The corpus folders under the roots (a folder holding ``labels.json``), by name."""
    found = [
        child
        for root in roots
        if root.is_dir()
        for child in root.iterdir()
        if (child / LABELS_FILE).is_file()
    ]
    return sorted(found, key=lambda child: child.name)
