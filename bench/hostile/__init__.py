"""The hostile-input stages of ``python -m bench.run``: what an unauthenticated request or
a hostile email costs Kave, the figures RELIABILITY.md's "Hostile input" quotes.

- ``webhooks``: hostile webhook bodies against one receiver process (:mod:`.webhooks`);
- ``flood``: connections that declare a huge body and trickle it (:mod:`.flood`);
- ``mail``: how fast and how cheaply the parser refuses hostile emails (:mod:`.mail`);
- ``complexity``: CPU seconds per MB of each adversarial email family (:mod:`.complexity`);
- ``fuzz``: a timed search for new slow email bodies (:mod:`.fuzz`).

None is in the default run (``--only hostile`` runs the first four, ``--only fuzz`` the
search). Each module has ``run(...)``, which returns the stage's figures (a JSON-ready
dict, kept in ``--out``), and ``section(figures)``, its part of the printed table and
the targets it checks. They may import :mod:`loadkit`, :mod:`bench.stack`, ``shared``
and the worker's parse path; nothing imports them but :mod:`bench.run` and
:mod:`bench.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.settings import Settings


@dataclass(frozen=True)
class ReceiverStage:
    """What a stage that starts its own receiver is handed: ``settings_for(**changes)``, the
    run's settings (its Redis and database); the scratch directory; ``--quick``; and
    where progress lines go."""

    settings_for: Callable[..., Settings]
    tmp: Path
    quick: bool
    progress: Callable[[str], None] = print
