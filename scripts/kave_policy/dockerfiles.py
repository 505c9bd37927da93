"""The rules for the Dockerfiles and .dockerignore.

Each image: multi-stage from a pinned python:3.11 slim base, no secret in an ENV or ARG,
a runtime stage that copies the builder's venv, runs as a non-root user, has a
HEALTHCHECK and STOPSIGNAL SIGTERM, and starts its server in exec form (uvicorn with
--no-proxy-headers); only the image's own pins, installed with --require-hashes, and
only its own packages of the project, installed with --no-deps. .dockerignore keeps
.env, .git and .venv out of the build.

Imports ``values``, ``processes``, ``uvicorn`` and the receiver's and the API's commands
of ``compose_services``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .compose_services import API_CMD, RECEIVER_CMD
from .processes import SECRET_NAME
from .uvicorn import PROXY_HEADERS_FINDING, trusts_proxy_headers
from .values import Findings

SERVER_CMDS = {"receiver": RECEIVER_CMD, "api": API_CMD}
# The project's packages each image copies in. The public receiver's carries neither the
# API nor the worker; the API's has the `kave` command (`kave users`), whose module
# imports the hand-off routes parser of worker/.
PACKAGES = {
    "receiver": {"shared", "receiver"},
    "api": {"shared", "api", "kave", "worker"},
    "worker": {"shared", "receiver", "worker", "kave", "migrations"},
}
PROJECT_PACKAGES = set().union(*PACKAGES.values())


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def check_dockerfile(path: Path, own: str, findings: Findings) -> None:
    where = path.name
    f = findings
    if not path.is_file():
        f.check(False, where, "missing")
        return
    instructions = dockerfile_instructions(path)
    text = path.read_text(encoding="utf-8")
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1].strip('"')
        for kw, rest in instructions
        if kw == "ARG" and "=" in rest
    }

    for kw, rest in instructions:
        if kw not in ("ENV", "ARG") or not rest:
            continue
        names = re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", rest) or [rest.split()[0]]
        for name in names:
            f.check(
                not SECRET_NAME.search(name),
                where,
                f"{kw} {name}: no secret in the image (it comes from the environment)",
            )

    froms = [rest for kw, rest in instructions if kw == "FROM"]
    f.check(len(froms) >= 2, where, "must be multi-stage (a builder stage and a runtime stage)")
    for spec in froms:
        image = spec.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        f.check(
            re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image),
            where,
            f"base image {image!r} must be a pinned python:3.11...-slim tag",
        )

    last = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    final = instructions[last:]

    def final_has(keyword: str) -> list[str]:
        return [rest for kw, rest in final if kw == keyword]

    f.check(
        any("--from=" in rest for rest in final_has("COPY")),
        where,
        "the runtime stage must COPY --from the builder stage",
    )
    users = final_has("USER")
    f.check(
        users and users[-1].split(":")[0] not in ("root", "0"),
        where,
        "the runtime stage must switch to a non-root USER",
    )
    f.check(final_has("HEALTHCHECK"), where, "needs a HEALTHCHECK")
    f.check(final_has("STOPSIGNAL") == ["SIGTERM"], where, "needs STOPSIGNAL SIGTERM")
    env_text = " ".join(final_has("ENV"))
    for var in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        f.check(var in env_text, where, f"the runtime stage must set {var}")

    cmds = final_has("CMD")
    cmd: list[str] = []
    if cmds:
        try:
            cmd = json.loads(cmds[-1])
        except json.JSONDecodeError:
            cmd = []
    f.check(cmd, where, "CMD must be in exec (JSON) form so signals reach the server")
    if cmd[:2] == ["sh", "-c"]:
        f.check(
            len(cmd) == 3 and cmd[2].startswith("exec "),
            where,
            "a `sh -c` CMD must `exec` the server so it is PID 1 and gets SIGTERM",
        )

    _check_installs(text, instructions, own, where, f)
    _check_packages(instructions, own, where, f)
    f.check(not trusts_proxy_headers(cmd), where, PROXY_HEADERS_FINDING)
    if own in SERVER_CMDS:
        f.check(cmd == SERVER_CMDS[own], where, f"CMD must be {SERVER_CMDS[own]}")
    else:
        joined = " ".join(cmd)
        f.check(
            "celery -A worker.main worker" in joined and "-Q kave" in joined,
            where,
            "CMD must run celery -A worker.main worker ... -Q kave",
        )


def _check_installs(
    text: str, instructions: list[tuple[str, str]], own: str, where: str, f: Findings
) -> None:
    """Only the image's own pins, each with its hashes; the project itself without deps."""
    own_req = f"requirements/{own}.txt"
    f.check(
        re.search(rf"pip install [^\n]*-r {re.escape(own_req)}", text),
        where,
        f"must pip install -r {own_req}",
    )
    for kw, rest in instructions:
        if kw == "RUN" and re.search(r"pip install\b[^&;|]*\s-r\s", rest):
            f.check(
                re.search(r"pip install\b[^&;|]*--require-hashes", rest),
                where,
                "pip install -r must use --require-hashes (a package that does not match "
                "its pinned hash must fail the build)",
            )
    for req in re.findall(r"requirements/(\w+)\.txt", text):
        f.check(req == own, where, f"installs requirements/{req}.txt; only {own_req} belongs here")
    f.check(
        re.search(r"pip install [^\n]*--no-deps \.", text),
        where,
        "must install the project with pip install --no-deps .",
    )


def _check_packages(instructions: list[tuple[str, str]], own: str, where: str, f: Findings) -> None:
    """The image copies in exactly its own packages of the project (and never all of it)."""
    copied: set[str] = set()
    for kw, rest in instructions:
        sources = rest.split()[:-1]
        if kw != "COPY" or any(s.startswith("--from") for s in sources):
            continue
        for source in sources:
            name = source.rstrip("/")
            copied |= PROJECT_PACKAGES if name in (".", "") else {name} & PROJECT_PACKAGES
    f.check(
        copied == PACKAGES[own],
        where,
        f"copies the packages {sorted(copied)}; this image needs {sorted(PACKAGES[own])}",
    )


def check_dockerignore(path: Path, findings: Findings) -> None:
    if not path.is_file():
        findings.check(False, path.name, "missing")
        return
    patterns = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    for needed in (".env", ".git", ".venv/"):
        findings.check(
            needed in patterns or needed.rstrip("/") in patterns,
            path.name,
            f"must exclude {needed}",
        )
