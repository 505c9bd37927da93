"""Every setting Kave reads: one validated class, its fields grouped by concern.

``from shared.settings import Settings, get_settings`` is all most code needs; the names
below are exported here so that no caller has to know which module holds them. Every
variable keeps its ``KAVE_*`` name (``FLOWER_BASIC_AUTH`` too): the groups are only how
the source is laid out, not prefixes or nested models.

What lives where:

- ``common``: ``MIB``, ``SettingsError``, and how raw values are read (comma-separated
  lists, an empty value as unset).
- One fields class per concern, each a pydantic model the combined class inherits:
  ``process`` (``KAVE_ENV``, ``KAVE_PROCESS``), ``stores`` (PostgreSQL, Redis, the
  object store, pools and client timeouts), ``webhook`` (signing and the receiver's
  limits), ``workers`` (queue, retries, reconciliation, per-email caps), ``retention``,
  ``observability`` (logs, metrics, Flower), ``handoff``, ``trust`` (sender trust, malware
  scanning) and ``access`` (API tokens,
  CORS, trusted proxies, rate limits). A group holds its fields, the before-validators
  of its own fields and accessors that read only its own fields.
- ``production``: what spans groups: ``PROCESS_NEEDS``, the consistency and production
  checks, ``require_process``.
- ``combined``: ``Settings`` (the groups plus the configuration and the cross-group
  accessors) and ``get_settings``.

Imports go one way: ``common`` imports nothing of the package; a group imports only
``common``; ``production`` imports ``common`` and ``process`` (and ``Settings`` for type
checking only); ``combined`` imports them all; this file only re-exports. Outside
``shared.secret_strength``, nothing of Kave is imported. Two groups must not give a
validator the same attribute name: pydantic keeps one per name, so the other would be
silently dropped.
"""

from shared.settings.access import RateLimit, parse_rate
from shared.settings.combined import Settings, get_settings
from shared.settings.common import MIB, SettingsError
from shared.settings.process import ProcessName
from shared.settings.production import PROCESS_NEEDS
from shared.settings.webhook import MANDRILL_TEST_KEY

__all__ = [
    "MANDRILL_TEST_KEY",
    "MIB",
    "PROCESS_NEEDS",
    "ProcessName",
    "RateLimit",
    "Settings",
    "SettingsError",
    "get_settings",
    "parse_rate",
]
