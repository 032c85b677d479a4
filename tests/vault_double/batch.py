"""Transit's batch_input decoding and batch response status, as Vault implements them.

The keys service sends many wraps in one request, so what matters is Vault's contract for a
batch: a malformed batch (not a list, a non-string field, a missing plaintext or ciphertext) is
rejected as a whole with a 500, while a bad item only fails itself, reported in its ``error``
field of ``batch_results``; the response is then 400 (or ``partial_failure_response_code`` if
given and some items succeeded), with the batch results in the body rather than ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import Reply, VaultError, envelope, multierror
from .fields import get_int

__all__ = ["BatchItem", "batch_reply", "decode_batch"]


@dataclass
class BatchItem:
    """One request item (a single request is a batch of one)."""

    plaintext: str = ""
    ciphertext: str = ""
    context: str = ""
    nonce: str = ""
    key_version: int = 0
    associated_data: str = ""
    reference: str = ""


def _go_type(value: Any) -> str:
    """The Go type name Vault's decoder reports for a JSON value."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "json.Number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _malformed(message: str) -> VaultError:
    return VaultError(500, multierror(f"failed to parse batch input: {message}"))


def decode_batch(raw: Any, *, require: str | None) -> list[BatchItem]:
    """Decode batch_input; `require` names the field every item must carry, if any."""
    if not isinstance(raw, list):
        raise _malformed(f"source data must be an array or slice, got {_go_type(raw)}")
    items: list[BatchItem] = []
    problems: list[str] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise _malformed(f"[{index}] expected a map, got '{_go_type(entry)}'")
        item = BatchItem()
        for field in (
            "plaintext",
            "ciphertext",
            "context",
            "nonce",
            "associated_data",
            "reference",
        ):
            if field not in entry:
                continue
            value = entry[field]
            if isinstance(value, str):
                setattr(item, field, value)
            elif value is not None or field == "plaintext":
                problems.append(
                    f"'[{index}].{field}' expected type 'string', "
                    f"got unconvertible type '{_go_type(value)}'"
                )
        if entry.get("key_version") is not None:
            version = entry["key_version"]
            if isinstance(version, int) and not isinstance(version, bool):
                item.key_version = version
            else:
                problems.append(
                    f"'[{index}].key_version' expected type 'int', "
                    f"got unconvertible type '{_go_type(version)}'"
                )
        if require is not None and require not in entry:
            verb = "encrypt" if require == "plaintext" else "decrypt"
            problems.append(f"'[{index}].{require}' missing {require} to {verb}")
        items.append(item)
    if problems:
        points = "\n".join(sorted(f"* {problem}" for problem in problems))
        raise _malformed(f"{len(problems)} error(s) decoding:\n\n{points}")
    return items


def batch_reply(
    body: dict[str, Any], results: list[dict[str, Any]], *, partial_failure_status: bool
) -> Reply:
    """The response to a batch: 200, or Vault's status when some items failed.

    Rewrap does not apply a failure status (Vault answers 200 with per-item errors), hence
    `partial_failure_status`.
    """
    data = {"batch_results": results}
    failed = any("error" in result for result in results)
    if not partial_failure_status or not failed:
        return Reply(200, envelope(data=data, mount_type="transit"))
    status = 400
    warnings: list[str] = []
    succeeded = any("error" not in result for result in results)
    if succeeded and body.get("partial_failure_response_code") is not None:
        override = get_int(body, "partial_failure_response_code")
        if 1 <= override <= 599:
            status = override
        else:
            warnings.append(
                "invalid HTTP response code override from partial_failure_response_code, "
                "reverting to 400"
            )
    return Reply(status, envelope(data=data, warnings=warnings, mount_type="transit"))
