"""Settings handed to child processes, exactly: the one way to build a child's environment."""

from __future__ import annotations

import os

from shared.settings import Settings


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment without its own ``KAVE_*`` variables, plus ``settings``
    as ``KAVE_*`` variables and ``extra``: the child reads back exactly ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAVE_")}
    env.update(settings.as_environment())
    env.update(extra)
    return env


def derive_settings(base: Settings, **changes: object) -> Settings:
    """A validated copy of ``base`` with some values changed."""
    values = {**base.model_dump(), **changes}
    return Settings(_env_file=None, **values)
