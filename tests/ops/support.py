"""Helpers of the operations tests: log lines, Prometheus samples, unique events, and
the policy scripts of scripts/ loaded as modules."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.webhooks import fixture_events

ROOT = Path(__file__).resolve().parents[2]


def rendered_example_overlay() -> list[dict[str, Any]]:
    """The objects of deploy/kubernetes/example as ``kubectl kustomize`` renders them
    (the test is skipped where kubectl is missing)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: it renders the Kustomize overlay")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy/kubernetes/example")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (scripts/ is not a package: the checks run as files,
    with scripts/ as their import path, from which they import ``kave_policy``)."""
    _scripts_importable()
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def policy_module(name: str) -> ModuleType:
    """``scripts/kave_policy/<name>.py``: the rules the policy scripts run."""
    _scripts_importable()
    return importlib.import_module(f"kave_policy.{name}")


def _scripts_importable() -> None:
    if str(ROOT / "scripts") not in sys.path:
        sys.path.append(str(ROOT / "scripts"))


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every JSON log line of a file (a Celery banner and the like are skipped)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` whose labels include ``labels``; None if
    there is none."""
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def value(text: str, name: str, **labels: str) -> float:
    """Like :func:`sample`, 0 when absent (a labelled counter appears at its first use)."""
    return sample(text, name, **labels) or 0.0


def family_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


_MESSAGE_ID = re.compile(r"^Message-ID:.*$", re.IGNORECASE | re.MULTILINE)


def unique_inbound() -> dict[str, Any]:
    """A real inbound fixture made into a new email (its own Message-ID)."""
    (event,) = json.loads(fixture_events("inbound_text_only.json"))
    raw = event["msg"]["raw_msg"]
    new_id = f"Message-ID: <{uuid.uuid4().hex}@ops.kave.test>"
    event["msg"]["raw_msg"] = (
        _MESSAGE_ID.sub(new_id, raw, count=1) if _MESSAGE_ID.search(raw) else f"{new_id}\n{raw}"
    )
    return dict(event)


def unique_open() -> dict[str, Any]:
    """A real open event made into a new one (its own message id)."""
    (event,) = json.loads(fixture_events("open.json"))
    event = copy.deepcopy(event)
    event["msg"]["_id"] = uuid.uuid4().hex
    return dict(event)


def events_json(events: list[dict[str, Any]]) -> str:
    return json.dumps(events)
