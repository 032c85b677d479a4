"""The code systems the consent service understands, shared by RecordConsent and Check.

A consent's provisions and a Check's question are compared code for code, so both are
validated against the same sets: a purpose or data class that no consent could ever name
(``psy``, ``hresch``) is refused rather than silently matched by nothing, which under an
opt-out policy or a broad permit would fail open.
"""

from __future__ import annotations

from typing import Final

CONSENT_SCOPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
PRIVACY_SCOPE: Final = "patient-privacy"
PURPOSE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SENSITIVITY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PARTICIPATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

#: v3-ActReason codes under PurposeOfUse (THO ActReason 2.1.0), abstract codes left out.
PURPOSE_OF_USE_CODES: Final = frozenset(
    {
        "BIORCH", "BTG", "CAREMGT", "CLINTRCH", "CLINTRCHNPC", "CLINTRCHPC", "CLINTRL",
        "CLMATTCH", "COC", "COVAUTH", "COVERAGE", "DISASTER", "DONAT", "DSRCH", "ELIGDTRM",
        "ELIGVER", "ENROLLM", "ERTREAT", "ETREAT", "FAMRQT", "FRAUD", "GOV", "HACCRED",
        "HCOMPL", "HDECD", "HDIRECT", "HDM", "HLEGAL", "HMARKT", "HOPERAT", "HOUTCOMS",
        "HPAYMT", "HPRGRP", "HQUALIMP", "HRESCH", "HSYSADMIN", "HTEST", "LABELING", "MEMADMIN",
        "METAMGT", "MILCDM", "MILDCRG", "OVRER", "OVRINCOMP", "OVRPJ", "OVRPS", "OVRTPS",
        "PATADMIN", "PATRQT", "PATSFTY", "PERFMSR", "POARCH", "POPHLTH", "PRECLINTRCH",
        "PUBHLTH", "PWATRNY", "RECORDMGT", "REMITADV", "SUPNWK", "SYSDEV", "THREAT", "TRAIN",
        "TRANSRCH", "TREAT",
    }
)  # fmt: skip
#: v3-ActCode codes under _ActInformationSensitivityPolicy: the kinds of sensitive data.
SENSITIVITY_CODES: Final = frozenset(
    {
        "BH", "COGN", "DVD", "EMOTDIS", "ETH", "ETHUD", "GDIS", "HIV", "MH", "MST", "OPIOIDUD",
        "PREGNANT", "PSY", "PSYTHPN", "SCA", "SDV", "SEX", "SICKLE", "SPI", "STD", "SUD", "TBOO",
        "VIO",
    }
)  # fmt: skip
#: v3-Confidentiality: unrestricted, low, moderate, normal, restricted, very restricted.
CONFIDENTIALITY_CODES: Final = frozenset({"U", "L", "M", "N", "R", "V"})
#: Every data class a provision (securityLabel) or a Check (data_classes) may name. The two
#: sets share no code, so a class names its code system unambiguously.
DATA_CLASS_CODES: Final = SENSITIVITY_CODES | CONFIDENTIALITY_CODES
#: The actor roles Check evaluates: whoever receives or reads the data.
RECIPIENT_ROLES: Final = frozenset({"IRCP", "PRCP"})
#: The role written for every actor of a stored consent (recipient).
RECIPIENT_ROLE: Final = "IRCP"


def data_class_system(code: str) -> str:
    """The code system of a data class from DATA_CLASS_CODES."""
    if code in SENSITIVITY_CODES:
        return SENSITIVITY_SYSTEM
    if code in CONFIDENTIALITY_CODES:
        return CONFIDENTIALITY_SYSTEM
    raise ValueError("not a data class medrelay knows")
