"""The sweeper: retention, abandoned sends and non-delivery notices, on a timer.

Every replica runs one; they share the work through row locks (SKIP LOCKED) and conditional
updates, so two sweepers never destroy or notify twice. Each pass is bounded (BATCH items of
each kind), and a failing pass is logged and retried at the next tick, never fatal.

Retention destroys in the order that cannot leave a readable document behind: the wraps are
shredded first (keys audits it; the exchange ledger records it), then the ciphertext is
deleted (audited with the deletion, in one transaction). A crash between the two leaves an
unreadable ciphertext that the next pass deletes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from medrelay import audit

from .keys_client import KeyCustody
from .settings import ExchangeSettings
from .store import ExchangeStore

log = logging.getLogger("medrelay.exchange.sweeper")

BATCH: Final = 100
#: A pending send younger than this may still be about to lock its mark; leave it alone.
ABANDONED_AFTER: Final = timedelta(minutes=1)


@dataclass(frozen=True)
class SweepReport:
    """What one pass did."""

    abandoned: int = 0
    expired: int = 0
    notices: int = 0


class Sweeper:
    """One replica's sweeper."""

    def __init__(
        self,
        store: ExchangeStore,
        keys: KeyCustody,
        settings: ExchangeSettings,
        *,
        actor: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._keys = keys
        self._settings = settings
        self._actor = actor
        self._now = clock

    async def run(self) -> None:
        """Sweep every interval until cancelled."""
        interval = self._settings.sweep_interval.total_seconds()
        while True:
            try:
                report = await self.sweep_once()
                if report != SweepReport():
                    log.info(
                        "sweep",
                        extra={
                            "abandoned": report.abandoned,
                            "expired": report.expired,
                            "notices": report.notices,
                        },
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried next tick; the type only (no data in logs)
                log.warning("sweep failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(interval)

    async def sweep_once(self, now: datetime | None = None) -> SweepReport:
        """One bounded pass of each kind of work."""
        moment = now or self._now()
        return SweepReport(
            abandoned=await self._abandoned_sends(moment),
            expired=await self._expired(moment),
            notices=await self._store.make_non_delivery_notices(
                moment - self._settings.non_delivery_after, moment, BATCH, self._actor
            ),
        )

    async def _abandoned_sends(self, now: datetime) -> int:
        done = 0
        for _ in range(BATCH):
            async with self._store.abandoned_send(now - ABANDONED_AFTER) as document_id:
                if document_id is None:
                    break
                shredded = await self._keys.shred(document_id)
                await self._store.record(
                    self._event("exchange.send.abandon", document_id, wraps_shredded=shredded)
                )
                done += 1
        return done

    async def _expired(self, now: datetime) -> int:
        done = 0
        for document_id, shredded in await self._store.expired(now, BATCH):
            if not shredded:
                count = await self._keys.shred(document_id)
                await self._store.mark_expire_shredded(
                    document_id,
                    now,
                    self._event("exchange.document.expire", document_id, wraps_shredded=count),
                )
            if await self._store.purge(
                document_id, now, self._event("exchange.document.purge", document_id)
            ):
                done += 1
        return done

    def _event(self, action: str, document_id: str, **details: int) -> audit.AuditEvent:
        return audit.AuditEvent(
            actor=self._actor,
            action=action,
            resource_type="Document",
            resource_id=document_id,
            outcome="success",
            details=details,
        )
