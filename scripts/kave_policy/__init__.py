"""Kave's own deployment rules, split by what they look at; run by the two policy scripts.

scripts/check_containers_policy.py (docker-compose.yml, the Dockerfiles) and
scripts/check_deploy_policy.py (deploy/kubernetes, deploy/prometheus, deploy/grafana)
import these modules; they run as files, with scripts/ as their import path.

- ``processes``, ``uvicorn``: what both policies agree on (which secrets each process
  reads, how uvicorn is started). Standard library only: check_deploy_policy.py runs in
  the deploy tools' venv, which has neither the project nor its dependencies.
- ``values``: reading compose values (commands, environments, durations, sizes) and
  ``Findings``. Standard library only (PyYAML, or ruamel.yaml, imported when loading).
- ``compose_services``, ``compose_privilege``, ``compose``: the rules for
  docker-compose.yml; ``dockerfiles``: the rules for the Dockerfiles and .dockerignore.
  They import ``values`` and the shared modules, never each other in a cycle:
  ``compose`` runs the other two, ``compose_privilege`` reads the service names of
  ``compose_services``, ``dockerfiles`` the commands of ``compose_services``.

Nothing here imports the project (shared, receiver, api, worker, kave).
"""
