"""Hand-off routes: which handler of the platform gets each stored email.

Role: load and validate the ordered route list of ``KAVE_HANDOFF_ROUTES_FILE`` (YAML or
JSON) and say which route an email matches. The first route whose every condition holds
wins; a route without conditions is the catch-all. An email no route matches is recorded
as unrouted (``kave.dispatches``) and never retried.

File shape::

    routes:
      - name: tickets                   # unique; part of each dispatch's idempotency key
        match:                          # every condition given must hold (all optional)
          recipient: support@example.com          # envelope recipient, exact, any case
          recipient_pattern: "*@support.example.com"  # shell-style glob, any case
          mailbox_hash: "ticket-*"      # plus-address tag (inbox+ticket-42@...), glob
          sender: "*@customer.example"  # From address, glob
          subject: "(?i)invoice"        # regular expression, searched
          auto_submitted: false         # false: never auto-replies/bounces; true: only them
          bulk: false                   # false: never list or newsletter mail; true: only it
          sender_trust: pass            # the From: is authenticated (pass|fail|none|unknown)
          from_allow: [customer.example, "*.customer.example", boss@partner.example]
          from_deny: [noreply.customer.example]
        handler:
          celery: {task: kave.handlers.tickets, queue: platform}
        after: text                     # optional: wait for the attachments' text (default: store)
      - name: everything-else
        match: {auto_submitted: false}
        handler:
          http:
            url: https://platform.example/hooks/mail
            secret_env: KAVE_HANDOFF_SECRET_PLATFORM   # env var holding the signing secret
            timeout_seconds: 10
            allow_insecure_http: false  # true: an http:// url is accepted in production

``sender`` globs the visible From: address, which anyone can write. ``from_allow`` and
``from_deny`` match the From: address (an entry with ``@``) or its domain (a glob without
``@``), never the envelope sender: ``from_allow`` holds only when the email's
``sender_trust`` is ``pass`` (its From: domain is DMARC-aligned with a DKIM signature
or SPF that verified: worker/ingest/trust/), so a forged From: never reaches an allowed
route; ``from_deny`` holds against the visible From: whatever the verdict (refusing on
an unproven name is safe).

Secrets never live in the file: an HTTP handler names the environment variable holding its
Standard Webhooks secret, ``whsec_`` + the base64 of at least 24 random bytes. The key is
decoded exactly as the Standard Webhooks libraries decode it (prefix removed, base64,
padding optional), so what the handler's library verifies with is what Kave signs with.
Any other form is refused: a raw string would be signed as its own bytes here but
base64-decoded by the handler's library, and no signature would ever verify.

The file is checked as a document (:func:`route_table`) and against the environment
(:func:`environment_problems`: every secret missing or malformed, named with its route)
separately: ``kave routes validate`` reports both, and ``kave run`` hands its worker the
variables :func:`secret_envs` names.

In production (``KAVE_ENV=production`` in the process's environment) an ``http://``
handler URL is refused unless its route says ``allow_insecure_http: true``: the signature
stops forgery, not reading, and the bodies carry whole emails.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.interrupts import INTERRUPTS

__all__ = [
    "CeleryHandler",
    "HttpHandler",
    "MatchInput",
    "Route",
    "RouteError",
    "RouteTable",
    "check_http_target",
    "environment_problems",
    "load_routes",
    "parse_routes",
    "read_routes",
    "route_table",
    "secret_envs",
    "signing_key",
]

MIN_SECRET_BYTES = 24
SECRET_PREFIX = "whsec_"  # noqa: S105 - the form of a secret, not one
# The standard base64 alphabet, padding optional (the libraries add it before decoding).
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_GENERATE_HINT = (
    "python -c \"import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
)
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_TASK = r"^kave\.handlers\.[A-Za-z0-9_.-]{1,100}$"
_ENV_NAME = r"^[A-Z_][A-Z0-9_]{0,127}$"


class RouteError(ValueError):
    """The routes file is missing, unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    recipient: str | None = None
    recipient_pattern: str | None = None
    mailbox_hash: str | None = None
    sender: str | None = None
    subject: str | None = None
    auto_submitted: bool | None = None
    bulk: bool | None = None
    sender_trust: Literal["pass", "fail", "none", "unknown"] | None = None
    from_allow: list[Annotated[str, Field(min_length=1, max_length=320)]] | None = None
    from_deny: list[Annotated[str, Field(min_length=1, max_length=320)]] | None = None

    @field_validator("subject")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"subject is not a valid regular expression ({exc})") from exc
        return value


class CeleryTarget(_Strict):
    task: Annotated[str, Field(pattern=_TASK)]
    queue: Annotated[str, Field(min_length=1, max_length=100)]


class HttpTarget(_Strict):
    url: HttpUrl
    secret_env: Annotated[str, Field(pattern=_ENV_NAME)]
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0
    allow_insecure_http: bool = False


class CeleryHandler(_Strict):
    celery: CeleryTarget


class HttpHandler(_Strict):
    http: HttpTarget


class Route(_Strict):
    name: Annotated[str, Field(pattern=_NAME)]
    match: Match = Match()
    handler: CeleryHandler | HttpHandler
    # "store": hand off once the email is stored; "text": once every attachment's text
    # status is final (ready, skipped or failed; worker.handoff.held).
    after: Literal["store", "text"] = "store"

    @property
    def is_catch_all(self) -> bool:
        return self.match == Match()

    def describe(self) -> str:
        """The handler, without secrets: for ``kave routes`` and logs."""
        if isinstance(self.handler, CeleryHandler):
            target = self.handler.celery
            return f"celery task {target.task} on queue {target.queue}"
        return f"http POST {self.handler.http.url}"


class RouteTable(_Strict):
    routes: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> RouteTable:
        seen: set[str] = set()
        for route in self.routes:
            if route.name in seen:
                raise ValueError(f"route name {route.name!r} is used twice")
            seen.add(route.name)
        return self

    def route(self, name: str) -> Route | None:
        return next((route for route in self.routes if route.name == name), None)

    def first_match(self, email: MatchInput) -> Route | None:
        return next((route for route in self.routes if matches(route.match, email)), None)


@dataclass(frozen=True, slots=True)
class MatchInput:
    """What routes look at: a stored email, or a hypothetical one (``kave routes test``)."""

    recipient: str | None
    sender: str | None
    subject: str | None
    mailbox_hash: str | None
    auto_submitted: bool
    bulk: bool
    # The email's verdict on its From: (None: not checked, which no condition takes as pass).
    sender_trust: str | None = None


def _glob(pattern: str, value: str | None) -> bool:
    return value is not None and fnmatch.fnmatchcase(value.lower(), pattern.lower())


def matches(match: Match, email: MatchInput) -> bool:
    checks = (
        match.recipient is None or (email.recipient or "").lower() == match.recipient.lower(),
        match.recipient_pattern is None or _glob(match.recipient_pattern, email.recipient),
        match.mailbox_hash is None or _glob(match.mailbox_hash, email.mailbox_hash),
        match.sender is None or _glob(match.sender, email.sender),
        match.subject is None or re.search(match.subject, email.subject or "") is not None,
        match.auto_submitted is None or match.auto_submitted == email.auto_submitted,
        match.bulk is None or match.bulk == email.bulk,
        match.sender_trust is None or match.sender_trust == email.sender_trust,
        match.from_allow is None
        or (email.sender_trust == "pass" and _from_listed(match.from_allow, email.sender)),
        match.from_deny is None or not _from_listed(match.from_deny, email.sender),
    )
    return all(checks)


def _from_listed(entries: list[str], address: str | None) -> bool:
    """Whether the From: address is one of ``entries``: an address (with ``@``) or a
    domain glob (without)."""
    if not address or "@" not in address:
        return False
    domain = address.rpartition("@")[2]
    return any(_glob(entry, address if "@" in entry else domain) for entry in entries)


def signing_key(target: HttpTarget, environ: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key of an HTTP handler, decoded from its ``whsec_`` + base64 secret as the
    Standard Webhooks libraries decode it; :class:`RouteError` for any other form. The
    messages never quote the secret."""
    name = target.secret_env
    # A trailing newline (a secret mounted from a file) is ignored by the libraries too;
    # leading blanks are not, so they are refused below as a missing prefix.
    given = (environ if environ is not None else os.environ).get(name)
    secret = (given or "").rstrip()
    fix = f"set it to whsec_ + base64 of {MIN_SECRET_BYTES}+ random bytes ({_GENERATE_HINT})"
    if not secret:
        state = "is not set in this environment" if given is None else "is empty"
        raise RouteError(f"{name} must hold a secret and {state}; {fix}")
    if not secret.startswith(SECRET_PREFIX):
        raise RouteError(
            f"{name} must hold a secret in the Standard Webhooks form and does not start "
            f"with whsec_ (the handler's library would base64-decode it, so no signature "
            f"would verify); {fix}"
        )
    encoded = secret.removeprefix(SECRET_PREFIX)
    if not _BASE64.match(encoded) or len(encoded.rstrip("=")) % 4 == 1:
        raise RouteError(f"{name} must hold a secret whose part after whsec_ is base64; {fix}")
    key = base64.b64decode(encoded.rstrip("=") + "==")
    if len(key) < MIN_SECRET_BYTES:
        # A short key signs nothing anyone could not forge.
        raise RouteError(
            f"{name} must hold a secret of at least {MIN_SECRET_BYTES} bytes and decodes to "
            f"{len(key)}; {fix}"
        )
    return key


def _is_production(environ: Mapping[str, str] | None) -> bool:
    return (environ if environ is not None else os.environ).get("KAVE_ENV") == "production"


def check_http_target(target: HttpTarget, environ: Mapping[str, str] | None = None) -> None:
    """Refuse what an HTTP handler may not be: a secret not in the Standard Webhooks form,
    or, in production, a plain ``http://`` URL its route did not allow."""
    signing_key(target, environ)
    if target.url.scheme == "http" and not target.allow_insecure_http and _is_production(environ):
        raise RouteError(
            f"handler url {target.url} is plain http:// and KAVE_ENV is production; use "
            "https://, or set allow_insecure_http: true on the route if the handler is "
            "reached over a network you trust (bodies carry whole emails)"
        )


def route_table(data: Any) -> RouteTable:
    """A decoded routes document, validated as a document: what the environment holds
    (secrets, ``KAVE_ENV``) is not looked at (:func:`environment_problems`)."""
    try:
        return RouteTable.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise RouteError(f"invalid routes: {problems}") from None


def secret_envs(table: RouteTable) -> tuple[str, ...]:
    """The environment variables the HTTP handlers' secrets are read from, each once."""
    names = (
        route.handler.http.secret_env
        for route in table.routes
        if isinstance(route.handler, HttpHandler)
    )
    return tuple(dict.fromkeys(names))


def environment_problems(table: RouteTable, environ: Mapping[str, str] | None = None) -> list[str]:
    """What this environment lacks to run the routes, one line per HTTP handler that
    cannot (its secret missing or not in the Standard Webhooks form, its URL refused in
    production), each naming its route and variable; empty when nothing is missing."""
    problems = []
    for route in table.routes:
        if isinstance(route.handler, HttpHandler):
            try:
                check_http_target(route.handler.http, environ)
            except RouteError as exc:
                problems.append(f"route {route.name!r}: {exc}")
    return problems


def parse_routes(data: Any, environ: Mapping[str, str] | None = None) -> RouteTable:
    """Validate a decoded routes document, and every HTTP handler's secret and URL."""
    return _checked(route_table(data), environ)


def _checked(table: RouteTable, environ: Mapping[str, str] | None) -> RouteTable:
    problems = environment_problems(table, environ)
    if problems:
        raise RouteError("; ".join(problems))
    return table


def read_routes(path: Path) -> RouteTable:
    """Read a routes file (``.yaml``/``.yml`` or ``.json``) and validate it as a document
    (:func:`route_table`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RouteError(f"cannot read routes file {path} ({exc.strerror})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except INTERRUPTS:
        raise  # a task's time limit, if a task loads the file first: not a bad file
    except Exception as exc:
        raise RouteError(
            f"routes file {path} is not valid YAML/JSON ({type(exc).__name__})"
        ) from None
    return route_table(data if data is not None else {})


def load_routes(path: Path, environ: Mapping[str, str] | None = None) -> RouteTable:
    """Read and validate a routes file, and every HTTP handler's secret and URL (all the
    problems in one error)."""
    return _checked(read_routes(path), environ)


@cache
def cached_routes(path: str) -> RouteTable:
    """The routes of a file, loaded once per process (workers restart to pick up changes)."""
    return load_routes(Path(path))
