"""The text-search configurations ``kave_search_config`` (migration 0013) may choose for an
email from its ``Content-Language`` header. A query is parsed with each of them and the
results are OR-ed, because the words of an email are stemmed in its own language: "invoices"
must find "invoice" in an English email (english stems both to ``invoic``) and in an email of
unknown language (simple keeps both words as written). tests/api/test_search.py checks this
list against the function's."""

from __future__ import annotations

from typing import Final

SEARCH_CONFIGS: Final = (
    "simple",
    "arabic",
    "armenian",
    "basque",
    "catalan",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hindi",
    "hungarian",
    "indonesian",
    "irish",
    "italian",
    "lithuanian",
    "nepali",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "serbian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
    "yiddish",
)
