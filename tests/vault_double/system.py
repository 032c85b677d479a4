"""sys/health and sys/seal-status: the two endpoints that answer without a token and when sealed.

Readiness probes and the keys service's startup check read these, so their status codes are
Vault's defaults (200 active, 503 sealed) and honour the documented ``activecode`` and
``sealedcode`` overrides; their bodies are bare JSON, not the usual response envelope.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import Reply

__all__ = ["Cluster"]

VERSION = "1.17.0+double"


class Cluster:
    """The identity the double reports, and its two status endpoints."""

    def __init__(self) -> None:
        self.name = f"vault-cluster-{uuid.uuid4().hex[:8]}"
        self.id = str(uuid.uuid4())

    def health(self, *, sealed: bool, query: Mapping[str, str], head: bool) -> Reply:
        body: dict[str, Any] = {
            "initialized": True,
            "sealed": sealed,
            "standby": sealed,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": VERSION,
            "enterprise": False,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        }
        if not sealed:
            body["cluster_name"] = self.name
            body["cluster_id"] = self.id
        status = _code(query, "sealedcode", 503) if sealed else _code(query, "activecode", 200)
        return Reply(status, None if head else body)

    def seal_status(self, *, sealed: bool) -> Reply:
        return Reply(
            200,
            {
                "type": "shamir",
                "initialized": True,
                "sealed": sealed,
                "t": 1,
                "n": 1,
                "progress": 0,
                "nonce": "",
                "version": VERSION,
                "build_date": "2024-01-01T00:00:00Z",
                "migration": False,
                "cluster_name": "" if sealed else self.name,
                "cluster_id": "" if sealed else self.id,
                "recovery_seal": False,
                "storage_type": "inmem",
            },
        )


def _code(query: Mapping[str, str], name: str, default: int) -> int:
    value = query.get(name, "")
    return int(value) if value.isdigit() else default
