"""Reading compose values as compose does, and the list of findings the checks fill.

A compose file may write a command as a list or a string, an environment as a mapping or
a list, a duration as "5m0s" or (resolved) nanoseconds, a size as "768m" or bytes: these
helpers give each one a single shape. ``Findings`` collects "where: message" lines;
``Check`` is its ``check`` bound to a place.

Standard library only (PyYAML, or check-jsonschema's ruamel.yaml, imported by
``load_yaml`` when it is called); imports nothing of Kave.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Services = dict[str, dict[str, Any]]
Check = Callable[[object, str, str], None]


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: object, where: str, message: str) -> None:
        item = f"{where}: {message}"
        if not ok and item not in self.items:
            self.items.append(item)


def load_yaml(path: Path) -> Any:
    try:
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except ImportError:  # check-jsonschema always brings ruamel.yaml
        from ruamel.yaml import YAML

        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def as_argv(command: Any) -> list[str]:
    """A compose command (list or string) as a list of strings."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    # An unquoted YAML 1.1 `yes` loads as True; compose (YAML 1.2) reads it as "yes".
    return ["yes" if item is True else str(item) for item in command]


def as_env(environment: Any) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): "" if v is None else str(v) for k, v in environment.items()}
    env: dict[str, str] = {}
    for item in environment:
        key, _, value = str(item).partition("=")
        env[key] = value
    return env


def as_depends(depends_on: Any) -> dict[str, str]:
    """service -> condition (list syntax means service_started)."""
    if depends_on is None:
        return {}
    if isinstance(depends_on, list):
        return dict.fromkeys(map(str, depends_on), "service_started")
    return {
        str(name): str((spec or {}).get("condition", "service_started"))
        for name, spec in depends_on.items()
    }


def container_ports(ports: Any) -> list[int]:
    """The container-side port of each published port (short or long syntax)."""
    result: list[int] = []
    for port in ports or []:
        if isinstance(port, dict):
            result.append(int(port["target"]))
        else:
            target = str(port).split("/")[0].rsplit(":", 1)[-1]
            result.append(int(target.split("-")[0]))
    return result


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def seconds(duration: Any) -> float | None:
    """A compose duration ("300s", "5m0s", "1m30s") in seconds; None if unset."""
    if duration is None:
        return None
    if isinstance(duration, int | float):  # resolved JSON may give nanoseconds
        return float(duration) / 1e9 if duration > 10_000 else float(duration)
    text = str(duration).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


def contains_sequence(argv: list[str], *sequence: str) -> bool:
    n = len(sequence)
    return any(argv[i : i + n] == list(sequence) for i in range(len(argv) - n + 1))


def option_value(argv: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value`."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def healthcheck_text(service: dict[str, Any]) -> str:
    return " ".join(map(str, (service.get("healthcheck") or {}).get("test") or []))


def mounts(service: dict[str, Any], target: str) -> bool:
    """Whether a volume is mounted at target (short or long syntax)."""
    return any(
        str(v).endswith(":" + target) or (isinstance(v, dict) and v.get("target") == target)
        for v in service.get("volumes") or []
    )


def healthcheck_enabled(service: dict[str, Any]) -> bool:
    hc = service.get("healthcheck")
    if not hc or hc.get("disable"):
        return False
    test = hc.get("test")
    return bool(test) and test != ["NONE"]


def env_file_paths(service: dict[str, Any]) -> list[str]:
    """The env files of a service (short or long syntax), as written."""
    files = service.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    return [str(f.get("path") if isinstance(f, dict) else f) for f in files]


_SIZE = re.compile(r"(\d+)\s*([bkmg]?)b?", re.IGNORECASE)


def byte_size(value: Any) -> int | None:
    """A compose size (805306368, "768m", "2g") in bytes; None if it is not one."""
    match = _SIZE.fullmatch(str(value if value is not None else "").strip())
    if not match:
        return None
    power = " kmg".index(match.group(2).lower() or " ")
    return int(match.group(1)) * 1024**power or None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def variables(text: str) -> list[tuple[str, str]]:
    """(name, modifier) of every ${NAME...} / $NAME in text: modifier ":?..." = required."""
    return [
        (braced or bare, modifier)
        for braced, modifier, bare in _VARIABLE.findall(text.replace("$$", ""))
    ]


def strings(node: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """(path, text) of every string in a YAML document (keys and values)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node
