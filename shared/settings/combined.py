"""The one ``Settings`` class: every group of fields combined, read from ``KAVE_*``.

Values come from environment variables prefixed ``KAVE_`` (and from a ``.env`` file in
the working directory). ``.env.example`` lists them all. In production the class refuses
to build when something the pipeline cannot run without is missing, so a misconfigured
process stops at start-up with a message instead of failing on the first webhook.

Only what spans groups is written here: the configuration, the model validator that
hands the finished settings to ``production``, and the accessors that read several
groups. ``get_settings`` is the process-wide instance.

May import: every module of the package, and pydantic-settings.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import production
from shared.settings.access import AccessFields
from shared.settings.common import SettingsError
from shared.settings.handoff import HandoffFields
from shared.settings.observability import ObservabilityFields
from shared.settings.process import ProcessFields, ProcessName
from shared.settings.redis_ha import RedisHaFields
from shared.settings.retention import RetentionFields
from shared.settings.stores import StoreFields
from shared.settings.text import TextFields
from shared.settings.trust import TrustFields
from shared.settings.webhook import WebhookFields
from shared.settings.workers import WorkerFields


# The groups are listed last to first: pydantic collects fields from the last base
# first, so the fields (and model_dump, and as_environment) read process, stores,
# redis_ha, webhook, workers, retention, observability, hand-off, trust, access.
class Settings(
    AccessFields,
    TrustFields,
    TextFields,
    HandoffFields,
    ObservabilityFields,
    RetentionFields,
    WorkerFields,
    WebhookFields,
    RedisHaFields,
    StoreFields,
    ProcessFields,
    BaseSettings,
):
    model_config = SettingsConfigDict(
        env_prefix="KAVE_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        # A validation error must not print the values it was given: they hold secrets.
        hide_input_in_errors=True,
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        production.check_consistency(self)
        return self

    def require_process(self, process: ProcessName) -> None:
        """Refuse to run as ``process`` in production when KAVE_PROCESS names a process
        that demands less than this one reads: the production checks trust KAVE_PROCESS,
        so each entry point states what it is (a receiver told it is ``beat`` would
        otherwise start without its metrics token)."""
        production.require_process(self, process)

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "console" if self.env == "development" else "json"

    def as_environment(self) -> dict[str, str]:
        """These settings as the ``KAVE_*`` variables a child process would read back
        (secrets revealed: for handing to a process, never for logging)."""

        def text(value: object) -> str:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, list):
                return ",".join(text(item) for item in value)
            return str(value)

        return {
            f"KAVE_{name.upper()}": text(value)
            for name, value in self.model_dump().items()
            if value is not None
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; a readable error instead of a traceback."""
    try:
        return Settings()
    except ValueError as exc:
        raise SettingsError(f"invalid configuration: {exc}") from exc
