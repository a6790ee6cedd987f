"""A session's lease in Redis, kept while the session runs on this generator.

The lease's fencing token makes every write of this owner conditional (``liveact.state.store``).
``guarded`` runs one store operation and, when it is fenced because Redis lost the session (a
restart without persistence, an expiry), puts the session back and tries once more; a
``FencedError`` that remains means another generator owns the session now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from liveact.state.schema import SessionInfo
from liveact.state.store import FencedError, Lease, SessionStore, StoreError

__all__ = ["LEASE_RENEWALS_PER_TTL", "LeaseKeeper"]

log = logging.getLogger(__name__)

LEASE_RENEWALS_PER_TTL = 3  # the lease is renewed this many times per lease TTL

T = TypeVar("T")


class LeaseKeeper:
    def __init__(self, store: SessionStore, lease: Lease, secret: str, info: SessionInfo) -> None:
        self.store, self.lease = store, lease
        self.secret, self.info = secret, info  # to put the session back if Redis lost it

    @property
    def session_id(self) -> str:
        return self.lease.session_id

    async def guarded(self, op: Callable[[], Awaitable[T]]) -> T:
        """``await op()``; if fenced, put the session back when Redis merely lost it, then retry once.

        ``FencedError`` stays only when another owner holds a newer token.
        """
        try:
            return await op()
        except FencedError:
            await self.store.reinstate(self.lease, self.secret, self.info)
            return await op()

    async def keep(self, on_fenced: Callable[[FencedError], Awaitable[None]]) -> None:
        """Renew the lease every third of its TTL while the session runs (Redis away: try again later)."""
        period = self.store.settings.lease_ttl_s / LEASE_RENEWALS_PER_TTL
        while True:
            await asyncio.sleep(period)
            try:
                await self.guarded(lambda: self.store.renew(self.lease))
            except FencedError as exc:
                await on_fenced(exc)
                return
            except StoreError as exc:
                log.debug("lease renewal failed", extra={"session": self.session_id, "error": str(exc)})
