"""What de-identification changed, for the sender to review before anything leaves.

A report lists where and how, never the values: it travels with the de-identified copy (the
gateway returns it, the exchange logs its counts), so it must not carry what was removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Change:
    """One change: where (a FHIR path, a DICOM tag and keyword, "pixels", "metadata"), what
    was done (removed, emptied, replaced, shifted, generalised, blurred, blacked out, kept)
    and, when useful, why (the profile's action code, a count)."""

    where: str
    action: str
    why: str = ""

    def to_json(self) -> dict[str, str]:
        """The change as a JSON object; `why` only when set."""
        out = {"where": self.where, "action": self.action}
        if self.why:
            out["why"] = self.why
        return out


@dataclass
class Report:
    """Every change made to one document, in the order they were made."""

    #: What was de-identified: "dicom", "photo" or "fhir".
    kind: str
    #: The method, as a reader would cite it (e.g. the DICOM profile and options applied).
    method: str
    changes: list[Change] = field(default_factory=list)

    def add(self, where: str, action: str, why: str = "") -> None:
        """Record one change."""
        self.changes.append(Change(where, action, why))

    def extend(self, other: Report, prefix: str = "") -> None:
        """Take in the changes of a nested document (an attachment inside a FHIR resource)."""
        for change in other.changes:
            self.changes.append(Change(prefix + change.where, change.action, change.why))

    def counts(self) -> dict[str, int]:
        """How many changes of each action: what logs and metrics may carry."""
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "kind": self.kind,
            "method": self.method,
            "changes": [change.to_json() for change in self.changes],
        }
