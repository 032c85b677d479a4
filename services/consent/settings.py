"""Settings of the consent service only (MEDRELAY_CONSENT_*)."""

from __future__ import annotations

from dataclasses import dataclass

from medrelay.settings import setting

from .model import DefaultPolicy


def _policy(value: str) -> DefaultPolicy:
    try:
        return DefaultPolicy(value)
    except ValueError:
        raise ValueError("expected opt-in, care-team or opt-out") from None


@dataclass(frozen=True)
class ConsentSettings:
    """How this deployment decides when no consent speaks."""

    default_policy: DefaultPolicy = setting(
        "MEDRELAY_CONSENT_DEFAULT_POLICY",
        "What decides when no consent matches: opt-in (deny), care-team (permit treatment "
        "within the patient's current care team) or opt-out (permit unless denied).",
        _policy,
        default=DefaultPolicy.CARE_TEAM,
    )
