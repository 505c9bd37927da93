"""The evaluation of Kave's derived fields against labelled public test corpora.

``evaluation/corpora/<name>/`` holds one corpus: its messages (``.eml``), ``labels.json``
(the expected value of each labelled field per message, and thread sets) and ``SOURCE.md``
(where the messages come from, their licence, what was changed and how the labels were
made). :mod:`evaluation.corpus` reads them, :mod:`evaluation.score` compares the derived
fields with the labels, :mod:`evaluation.run` prints the table (``make eval``,
EVALUATION.md).

Nothing of the product imports this package (an import-linter contract keeps it so): it is
a measuring tool that reads the product, never the reverse.
"""
