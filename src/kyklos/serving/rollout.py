"""The challenger arm of a live server: which requests it sees and what it answers.

While a rollout is active (see :mod:`kyklos.registry.rollouts`) the server holds a
:class:`ChallengerArm`: the loaded challenger, its own batcher, and the rollout's strategy.

* ``canary``: a request goes to the challenger when its routing key hashes below ``fraction``
  (:func:`canary_takes`). The key is the ``X-Routing-Key`` header (a user or session id), so the
  same key always lands on the same arm; without one the draw is random per request. The
  challenger's answer is returned and logged with ``arm="canary"``.
* ``shadow``: every request is answered by the champion; a copy of its rows is predicted by the
  challenger after the answer is durable, and logged with ``arm="shadow"`` under the same
  request id, so labels join to both and the two versions are compared on the same rows.

A failing challenger never fails a request: a canary request whose challenger prediction fails
is answered by the champion instead (counted in ``fallbacks``; ``/model`` shows the arm's
counters and last error, ``/metrics`` ``kyklos_rollout_fallbacks`` and
``kyklos_shadow_failures``). A request for the champion's version by name (``/v2/models/{m}/
versions/{v}/infer``) is never routed to the canary.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kyklos.serving.batcher import Batcher
    from kyklos.serving.model import LoadedModel

__all__ = ["ROUTING_HEADER", "ChallengerArm", "canary_takes"]

ROUTING_HEADER = "x-routing-key"
_SCALE = float(2**32)


def canary_takes(key: str | None, fraction: float) -> bool:
    """Whether a request with routing ``key`` goes to the canary (sticky per key).

    >>> canary_takes("user-1", 0.0), canary_takes("user-1", 1.0)
    (False, True)
    >>> canary_takes("user-7", 0.5) == canary_takes("user-7", 0.5)
    True
    """
    if fraction <= 0.0:
        return False
    if fraction >= 1.0:
        return True
    draw = zlib.crc32(key.encode()) / _SCALE if key else random.random()
    return draw < fraction


@dataclass
class ChallengerArm:
    """The challenger of the active rollout, loaded and batched (see the module doc)."""

    rollout_id: int
    strategy: str  # shadow | canary
    fraction: float
    model: LoadedModel
    batcher: Batcher
    requests: int = 0
    fallbacks: int = 0
    shadow_failures: int = 0
    last_error: str | None = field(default=None)
    retired: bool = False  # the rollout ended: shadow copies not yet queued are skipped

    @property
    def arm_name(self) -> str:
        return self.strategy

    def takes(self, key: str | None) -> bool:
        """Whether this request is answered by the challenger (canary only)."""
        return self.strategy == "canary" and canary_takes(key, self.fraction)
