"""The scale bench, ``python -m bench.scale`` (issue 37): a scratch database filled to N
emails with SQL, ``kave migrate`` under load, every list filter timed, the operator
commands measured.

- ``fill.py``: the fill (a year of mail, 20k senders, 50 mailboxes, threads, attachments);
- ``under_load.py``: the migration with a writer and a reader running;
- ``probes.py``: the requests (each filter with a common, a rare and an absent value);
- ``timing.py``: p50/p95 through the API's query functions, and each request's plan;
- ``operators.py``: ``kave audit``, ``purge``, ``erase --address``, ``reprocess`` timed.
"""
