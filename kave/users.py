"""``kave users create NAME [--role admin|operator|reader]`` and ``kave users disable NAME``:
who may use the management API, and what they may do (shared/roles.py).

The password is read from standard input when it is not a terminal (one line, for
scripts: ``printf '%s\\n' "$PASSWORD" | kave users create ops``) and asked twice at a
prompt otherwise; it is never an argument, where it would show in ``ps`` and shell history.
It must pass the production secret-strength rules (``api.auth.check_new_password``).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Callable
from typing import TextIO

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared import roles
from shared.db import make_engine, make_session_factory
from shared.models import User
from shared.settings import Settings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class UserError(Exception):
    """What went wrong, for the person at the terminal."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UserError(
            f"invalid user name {name!r}: 1-64 characters, letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def read_password(stdin: TextIO) -> str:
    if stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the passwords differ; nothing was changed")
    else:
        password = stdin.readline().rstrip("\r\n")
    return password


def check_password(password: str, name: str) -> str:
    """The password, if fit for user ``name`` (api.auth.check_new_password's rules)."""
    from api.auth import PasswordTooLongError, WeakPasswordError, check_new_password

    try:
        check_new_password(password, user_name=name)
    except (PasswordTooLongError, WeakPasswordError) as exc:
        raise UserError(f"{exc}; nothing was changed") from None
    return password


def create_user(settings: Settings, name: str, password: str, *, role: str = roles.OPERATOR) -> int:
    """Store a new user in ``role`` (shared.roles); its id."""
    from api.auth import hash_password

    check_name(name)
    if role not in roles.ROLES:
        raise UserError(f"unknown role {role!r}: one of {', '.join(roles.ROLES)}")
    password_hash = hash_password(check_password(password, name))
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            user = User(name=name, password_hash=password_hash, disabled=False, role=role)
            session.add(user)
            try:
                session.commit()
            except IntegrityError:
                raise UserError(f"user {name!r} exists already") from None
            return user.id
    finally:
        engine.dispose()


def disable_user(settings: Settings, name: str) -> None:
    """Disable a user: no new tokens, and the tokens it holds stop working at once."""
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            changed = session.execute(
                update(User).where(User.name == name).values(disabled=True).returning(User.id)
            ).one_or_none()
            if changed is None:
                known = session.scalars(select(User.name).order_by(User.name)).all()
                raise UserError(
                    f"no user {name!r}" + (f" (users: {', '.join(known)})" if known else "")
                )
            session.commit()
    finally:
        engine.dispose()


def _cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    role = roles.ADMIN if args.admin else args.role
    user_id = create_user(settings, check_name(args.name), read_password(sys.stdin), role=role)
    print(
        f"{role} user {args.name} created (id {user_id}); get a token from POST /api/v1/auth/token"
    )
    return 0


def _cmd_disable(args: argparse.Namespace, settings: Settings) -> int:
    disable_user(settings, args.name)
    print(f"user {args.name} disabled; its tokens no longer work")
    return 0


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    load_settings: Callable[[], Settings],
) -> None:
    """Add ``kave users ...`` to the ``kave`` command."""
    users = commands.add_parser("users", help="create or disable users of the management API")
    actions = users.add_subparsers(dest="users_command", required=True)
    create = actions.add_parser(
        "create", help="create a user; the password comes from stdin or a prompt"
    )
    create.add_argument("name")
    create.add_argument(
        "--role",
        choices=roles.ROLES,
        default=roles.OPERATOR,
        help="admin: everything; operator (default): all but erasing; reader: reads only",
    )
    create.add_argument("--admin", action="store_true", help="the same as --role admin")
    create.set_defaults(action=_cmd_create)
    disable = actions.add_parser("disable", help="disable a user and every token it holds")
    disable.add_argument("name")
    disable.set_defaults(action=_cmd_disable)

    def handler(args: argparse.Namespace) -> int:
        action: Callable[[argparse.Namespace, Settings], int] = args.action
        try:
            return action(args, load_settings())
        except UserError as exc:
            print(f"kave: {exc}", file=sys.stderr)
            return 1

    users.set_defaults(handler=handler)
