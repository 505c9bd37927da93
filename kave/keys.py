"""``kave keys create|revoke|list``: bearer keys for agents (shared/agent_keys.py).

``kave keys create NAME --scope read [--mailbox PATTERN]... [--expires 30d|DATE]
[--rate 120/minute]`` prints the key once, on standard output; only its sha256 is kept,
so a lost key cannot be shown again (create another and revoke the lost one). Revoking
takes effect on the key's next request: the API looks keys up on every request.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from kave.users import UserError, check_name
from shared import roles
from shared.agent_keys import check_mailbox_pattern, key_sha256, new_key, shown_prefix
from shared.db import make_engine, make_session_factory
from shared.models import ApiKey
from shared.settings import Settings, parse_rate

_DURATION = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``2w`` from now, or an ISO date or date-time (UTC if no zone)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value.strip())
    if match:
        return now + int(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"--expires {value!r}: use a duration (12h, 30d, 2w) or a date (2027-01-31)"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= now:
        raise UserError(f"--expires {value!r} is in the past")
    return moment


def create_key(
    settings: Settings,
    name: str,
    *,
    scope: str = roles.READ_SCOPE,
    mailboxes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit: str | None = None,
) -> str:
    """Store a new key; the key itself (the only time it exists in the clear)."""
    check_name(name)
    if scope not in roles.KEY_SCOPES:
        raise UserError(f"unknown scope {scope!r}: one of {', '.join(roles.KEY_SCOPES)}")
    try:
        patterns = [check_mailbox_pattern(p) for p in mailboxes or []]
        if rate_limit is not None:
            parse_rate(rate_limit)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    key = new_key()
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            session.add(
                ApiKey(
                    name=name,
                    key_sha256=key_sha256(key),
                    prefix=shown_prefix(key),
                    scope=scope,
                    mailboxes=patterns,
                    rate_limit=rate_limit,
                    expires_at=expires_at,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                raise UserError(f"key {name!r} exists already") from None
    finally:
        engine.dispose()
    return key


def revoke_key(settings: Settings, name: str) -> None:
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            changed = session.execute(
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
                .returning(ApiKey.id)
            ).one_or_none()
            if changed is None:
                raise UserError(f"no unrevoked key {name!r} (kave keys list)")
            session.commit()
    finally:
        engine.dispose()


def list_keys(settings: Settings) -> list[ApiKey]:
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))
    finally:
        engine.dispose()


def _cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    expires_at = parse_expiry(args.expires) if args.expires else None
    key = create_key(
        settings,
        args.name,
        scope=args.scope,
        mailboxes=args.mailbox,
        expires_at=expires_at,
        rate_limit=args.rate,
    )
    print(key)
    print(
        f"key {args.name} created; it is shown only now. Send it as 'Authorization: Bearer <key>'.",
        file=sys.stderr,
    )
    return 0


def _cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    revoke_key(settings, args.name)
    print(f"key {args.name} revoked; its next request is refused")
    return 0


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    for key in list_keys(settings):
        state = "revoked" if key.revoked_at else "active"
        expires = f"{key.expires_at:%Y-%m-%dT%H:%MZ}" if key.expires_at else "never"
        boxes = ",".join(key.mailboxes) or "*"
        print(f"{key.name}\t{key.prefix}…\t{key.scope}\t{boxes}\texpires {expires}\t{state}")
    return 0


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    load_settings: Callable[[], Settings],
) -> None:
    """Add ``kave keys ...`` to the ``kave`` command."""
    keys = commands.add_parser("keys", help="create, list or revoke agent API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name")
    create.add_argument("--scope", choices=roles.KEY_SCOPES, default=roles.READ_SCOPE)
    create.add_argument(
        "--mailbox",
        action="append",
        metavar="PATTERN",
        help="only mail to this envelope recipient (* any characters); repeatable",
    )
    create.add_argument("--expires", help="12h, 30d, 2w, or a date such as 2027-01-31")
    create.add_argument("--rate", help="its own rate limit, e.g. 120/minute (default: the API's)")
    create.set_defaults(action=_cmd_create)
    revoke = actions.add_parser("revoke", help="revoke a key: its next request is refused")
    revoke.add_argument("name")
    revoke.set_defaults(action=_cmd_revoke)
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.set_defaults(action=_cmd_list)

    def handler(args: argparse.Namespace) -> int:
        action: Callable[[argparse.Namespace, Settings], int] = args.action
        try:
            return action(args, load_settings())
        except UserError as exc:
            print(f"kave: {exc}", file=sys.stderr)
            return 1

    keys.set_defaults(handler=handler)
