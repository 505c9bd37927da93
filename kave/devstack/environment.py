"""Settings handed to child processes, exactly: the one way to build a child's environment."""

from __future__ import annotations

import os
from collections.abc import Iterable

from shared.settings import Settings


def child_env(settings: Settings, *, keep: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """This process's environment without its own ``KAVE_*`` variables, plus ``settings``
    as ``KAVE_*`` variables and ``extra``: the child reads back exactly ``settings``.

    ``keep``: ``KAVE_*`` variables of this environment that are not settings and pass as
    they are (the secrets hand-off routes name: ``worker.handoff.routes.secret_envs``);
    a setting of the same name still comes from ``settings``."""
    kept = set(keep)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("KAVE_") or name in kept
    }
    env.update(settings.as_environment())
    env.update(extra)
    return env


def derive_settings(base: Settings, **changes: object) -> Settings:
    """A validated copy of ``base`` with some values changed."""
    values = {**base.model_dump(), **changes}
    return Settings(_env_file=None, **values)
