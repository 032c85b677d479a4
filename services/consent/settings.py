"""Settings of the consent service only (MEDRELAY_CONSENT_*)."""

from __future__ import annotations

from dataclasses import dataclass

from medrelay.settings import setting

from .model import DefaultPolicy, DeidentifiedPolicy


def _policy(value: str) -> DefaultPolicy:
    try:
        return DefaultPolicy(value)
    except ValueError:
        raise ValueError("expected opt-in, care-team or opt-out") from None


def _deidentified_policy(value: str) -> DeidentifiedPolicy:
    try:
        return DeidentifiedPolicy(value)
    except ValueError:
        raise ValueError("expected permit or as-identified") from None


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
    deidentified_policy: DeidentifiedPolicy = setting(
        "MEDRELAY_CONSENT_DEIDENTIFIED_POLICY",
        "What decides a de-identified copy when no consent matches: permit (any practitioner "
        "or organisation may receive it: a second opinion, a teaching file) or as-identified "
        "(the default policy, as for the original). A consent that denies still denies.",
        _deidentified_policy,
        default=DeidentifiedPolicy.PERMIT,
    )
