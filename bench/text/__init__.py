"""Attachment-text benchmarks: ``corpus`` (the public test documents, rebuilt from PyPI),
``compare`` (the candidate libraries side by side, docs/text-extraction.md) and
``throughput`` (Kave's conversion, documents per second by format, BENCHMARKS.md)."""
