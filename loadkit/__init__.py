"""What the benchmark suite (``bench/``) and the tests both use: the inputs Kave is fed
and the instruments that watch it.

- inputs: signed Mandrill webhook bodies of chosen sizes (:mod:`loadkit.payloads`),
  hostile emails (:mod:`loadkit.hostile_mail`), adversarial email families and the parse
  and derive path they are timed on (:mod:`loadkit.complexity`), hostile webhook bodies
  (:mod:`loadkit.hostile_webhooks`), attacking connections (:mod:`loadkit.flood`),
  mail signed with dkimpy's test key (:mod:`loadkit.signed_mail`, the key in ``dkim/``)
  and a small DNS server that publishes it (:mod:`loadkit.dns_server`);
- instruments: a process's RSS and its peak (:mod:`loadkit.rss`), HEAD and RSS probes
  (:mod:`loadkit.probes`), an HTTP proxy that delays an S3 server's answers
  (:mod:`loadkit.latency_proxy`), the scratch directory a run keeps its files in
  (:mod:`loadkit.disk`), a live-feed client that reconnects (:mod:`loadkit.feed_client`);
- Redis beyond one node: a primary with replicas and Sentinels, a replica cut off its
  primary, a TLS-only server and its certificates (:mod:`loadkit.redis_topology`), and
  the failover scenario the fault test and the bench both drive
  (:mod:`loadkit.failover`).

It may import ``shared``, the worker's parse and derive path (``worker.ingest``) and
third-party libraries; never ``bench``, ``tests``, the receiver, the API or the CLI. No
product package imports it (both contracts are in pyproject.toml's import-linter
section), and it is not packaged: it runs from the checkout, as the bench and the tests
do. Nothing here is an entry point: the bench's stages (``python -m bench.run``) are.
"""
