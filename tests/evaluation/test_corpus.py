"""The evaluation corpora are well-formed, and the harness runs (accuracy is not asserted:
it is what ``make eval`` measures, EVALUATION.md)."""

from __future__ import annotations

import io
import json
import re
import shutil
from email import message_from_bytes
from pathlib import Path

import pytest

from evaluation import run
from evaluation.corpus import (
    CORPORA_DIR,
    FIELDS,
    SOURCE_FILE,
    CorpusError,
    corpus_dirs,
    load_corpus,
)
from evaluation.score import normalise_text

CORPORA = corpus_dirs([CORPORA_DIR])
SMALL = "kave-handmade"


def test_there_are_corpora() -> None:
    assert len(CORPORA) >= 3


@pytest.mark.parametrize("path", CORPORA, ids=[p.name for p in CORPORA])
def test_every_label_names_an_existing_file_and_a_known_field(path: Path) -> None:
    corpus = load_corpus(path)  # raises CorpusError on a missing file or unknown field

    assert corpus.cases
    for case in corpus.cases:
        assert (path / case.file).is_file()
        assert set(case.labels) <= FIELDS
    for thread in corpus.threads:
        assert len(thread.files) >= 2
        assert all((path / file).is_file() for file in thread.files)


@pytest.mark.parametrize("path", CORPORA, ids=[p.name for p in CORPORA])
def test_every_corpus_says_where_it_comes_from_and_its_licence(path: Path) -> None:
    source = (path / SOURCE_FILE).read_text(encoding="utf-8")

    assert re.search(r"^\s*-\s*\*\*Licen[cs]e:\*\*\s*\S", source, re.MULTILINE), source
    assert re.search(r"^\s*-\s*\*\*Repository:\*\*\s*\S", source, re.MULTILINE), source


@pytest.mark.parametrize("path", CORPORA, ids=[p.name for p in CORPORA])
def test_a_corpus_taken_from_elsewhere_carries_its_licence_text(path: Path) -> None:
    source = (path / SOURCE_FILE).read_text(encoding="utf-8")
    if "the licence of this repository" in source:
        pytest.skip("written for this repository")

    assert (path / "LICENSE").is_file()


def _names_a_parent(path: Path) -> bool:
    message = message_from_bytes(path.read_bytes())
    return bool(
        (message.get("In-Reply-To") or "").strip() or (message.get("References") or "").strip()
    )


@pytest.mark.parametrize("path", CORPORA, ids=[p.name for p in CORPORA])
def test_a_thread_is_modern_exactly_when_every_reply_names_a_parent(path: Path) -> None:
    # "Modern threads joined" is an acceptance figure: a thread counts in it only if each
    # reply carries In-Reply-To or References (the first message may name a root that is
    # not in the corpus). The label must agree with the messages, not with the scores.
    for thread in load_corpus(path).threads:
        replies_name_parents = all(_names_a_parent(path / f) for f in thread.files[1:])
        assert thread.threading_headers == replies_name_parents, thread.name


def test_a_label_for_a_missing_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / SOURCE_FILE).write_text("- **Licence:** none\n", encoding="utf-8")
    (tmp_path / "labels.json").write_text(
        json.dumps({"messages": [{"file": "gone.eml", "labels": {"bulk": True}}]}),
        encoding="utf-8",
    )

    with pytest.raises(CorpusError, match=r"gone\.eml"):
        load_corpus(tmp_path)


def test_the_harness_prints_a_table_for_a_small_corpus() -> None:
    out = io.StringIO()

    assert run.main(["--corpus", SMALL], out=out) == 0

    lines = out.getvalue().splitlines()
    assert lines[2].split() == ["corpus", "metric", "cases", "right", "%"]
    rows = [line for line in lines[4:] if line.startswith(SMALL)]
    assert any("reply_text exact" in row for row in rows)
    assert any("threads joined (stored parents)" in row for row in rows)


def test_the_harness_speaks_json_and_reads_extra_corpus_folders(tmp_path: Path) -> None:
    shutil.copytree(CORPORA_DIR / SMALL, tmp_path / "copy-of-small")
    out = io.StringIO()

    run.main(["--json", "--corpora-dir", str(tmp_path), "--corpus", "copy-of-small"], out=out)

    rows = json.loads(out.getvalue())["rows"]
    assert {row["corpus"] for row in rows} == {"copy-of-small"}
    assert all(set(row) >= {"metric", "cases", "right", "percent"} for row in rows)


def test_a_field_derived_lacks_reads_as_not_applicable(tmp_path: Path) -> None:
    (tmp_path / SOURCE_FILE).write_text("- **Licence:** ours\n", encoding="utf-8")
    shutil.copy(CORPORA_DIR / SMALL / "t1-1.eml", tmp_path / "m.eml")
    labels = {"messages": [{"file": "m.eml", "labels": {"forwarded_text": None}}]}
    (tmp_path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    out = io.StringIO()

    run.main(["--json", "--corpora-dir", str(tmp_path.parent), "--corpus", tmp_path.name], out=out)

    [row] = json.loads(out.getvalue())["rows"]
    derived_has_it = row["right"] is not None
    assert derived_has_it or row["percent"] is None


def test_text_is_compared_without_trailing_blanks_and_blank_runs() -> None:
    assert normalise_text("a  \r\n\n\n\nb\n\n") == "a\n\nb"
    assert normalise_text(None) is None
