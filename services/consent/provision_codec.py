"""Provisions to and from compact JSON, stored beside each consent so a Check is one query.

The FHIR resource is parsed once, when recorded; the rules' form of it is what a Check reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .model import ActorKind, ActorRef, Period, Provision, ProvisionType


def encode(provision: Provision) -> dict[str, Any]:
    """A JSON-ready dict; empty conditions are left out."""
    out: dict[str, Any] = {"type": provision.type.value}
    if provision.period is not None:
        out["period"] = [_instant(provision.period.start), _instant(provision.period.end)]
    if provision.actors:
        out["actors"] = sorted([a.kind.value, a.id] for a in provision.actors)
    if provision.purposes:
        out["purposes"] = sorted(provision.purposes)
    if provision.data_classes:
        out["classes"] = sorted(provision.data_classes)
    if provision.provisions:
        out["provisions"] = [encode(child) for child in provision.provisions]
    return out


def decode(data: dict[str, Any]) -> Provision:
    """The Provision `encode` wrote."""
    period = data.get("period")
    return Provision(
        type=ProvisionType(data["type"]),
        period=Period(_parse(period[0]), _parse(period[1])) if period else None,
        actors=frozenset(ActorRef(ActorKind(kind), id_) for kind, id_ in data.get("actors", [])),
        purposes=frozenset(data.get("purposes", [])),
        data_classes=frozenset(data.get("classes", [])),
        provisions=tuple(decode(child) for child in data.get("provisions", [])),
    )


def _instant(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
