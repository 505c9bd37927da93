"""Queries that more than one front end runs: the management API (api/) and the ``kave``
CLI read and change dead letters and deliveries through these, so both answer alike."""
