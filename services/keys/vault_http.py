"""Talking HTTP to Vault: the client, one request at a time, and what an answer means.

Every Vault call, for logging in or for Transit, goes through :func:`call_vault`, which applies
the timeout, turns transport failures into ``BackendUnavailable`` and never puts a token,
secret_id or JWT in a message. Logging in and staying logged in is vault_auth's job; what a
Transit answer means is vault_engine's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import hvac
import requests
from hvac.adapters import RawAdapter
from requests.adapters import HTTPAdapter

from .engine import BackendUnavailable
from .settings import KeysSettings

__all__ = [
    "VaultResponse",
    "call_vault",
    "new_vault_client",
    "outage",
    "safe_reason",
    "without_retries",
]

# Long runs of base64/base64url/JWT characters: a message from Vault that holds one might be
# echoing input (a ciphertext, a token), so it is cut out before the message goes anywhere.
_OPAQUE = re.compile(r"[A-Za-z0-9+/=_.\-]{24,}")


def safe_reason(message: object, limit: int = 160) -> str:
    """Vault's error text made fit for logs and exceptions: opaque runs removed, length capped.

    Vault's transit and auth errors are short fixed sentences; this guards against the rare one
    that quotes its input.
    """
    text = _OPAQUE.sub("[…]", str(message)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class VaultResponse:
    """One answer from Vault: the status and the JSON body ({} when there is none)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def errors(self) -> list[str]:
        """Vault's top-level error messages (raw: pass them through safe_reason before use)."""
        errors = self.body.get("errors")
        return [str(error) for error in errors] if isinstance(errors, list) else []

    @property
    def data(self) -> dict[str, Any]:
        data = self.body.get("data")
        return data if isinstance(data, dict) else {}


def new_vault_client(settings: KeysSettings) -> Any:
    """An hvac client for MEDRELAY_VAULT_* with no token yet; nothing is sent to Vault.

    RawAdapter makes every call return the requests.Response, so :func:`call_vault` decides
    what a status means.
    """
    http = requests.Session()
    http.verify = str(settings.vault_ca_cert) if settings.vault_ca_cert else True
    return hvac.Client(
        url=settings.vault_addr,
        token="",  # never pick up VAULT_TOKEN or ~/.vault-token behind the settings' back
        verify=http.verify,
        timeout=settings.vault_timeout_seconds,
        namespace=settings.vault_namespace or None,
        session=http,
        adapter=RawAdapter,
    )


def without_retries(session: requests.Session) -> None:
    """No urllib3 retries: a failed call fails once, within the timeout, and the caller decides.

    requests' default adapter already has no read retries, but mounting our own makes the
    guarantee explicit and independent of library defaults.
    """
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=0))


def call_vault(
    client: Any,
    method: str,
    path: str,
    *,
    timeout: float,
    body: Mapping[str, Any] | None = None,
) -> VaultResponse:
    """One HTTP request to ``/v1/<path>``; transport failures become BackendUnavailable.

    The status is returned as is (no hvac exception): callers decide what a 400 or 403 means,
    and hvac's exceptions would carry the whole response text, which for a partly failed batch
    holds the plaintexts of the items that succeeded.
    """
    address = client.adapter.base_uri
    try:
        response = client.adapter.request(
            method, f"/v1/{path}", json=body, timeout=timeout, raise_exception=False
        )
    except requests.Timeout:
        raise BackendUnavailable(
            f"vault unreachable at {address}: no answer within {timeout:g}s"
        ) from None
    except requests.exceptions.SSLError:
        raise BackendUnavailable(
            f"vault unreachable at {address}: TLS handshake failed (check MEDRELAY_VAULT_CACERT)"
        ) from None
    except requests.ConnectionError:
        raise BackendUnavailable(f"vault unreachable at {address}: cannot connect") from None
    except requests.RequestException as exc:
        raise BackendUnavailable(f"vault unreachable at {address}: {type(exc).__name__}") from None
    return VaultResponse(response.status_code, _json_body(response))


def _json_body(response: requests.Response) -> dict[str, Any]:
    """The answer's JSON object; {} for an empty, non-JSON or non-object body."""
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def outage(response: VaultResponse, what: str) -> BackendUnavailable | None:
    """The BackendUnavailable for a sealed or failing Vault, or None if Vault answered."""
    if response.status == 503:
        return BackendUnavailable(f"vault is sealed or unavailable (503) on {what}", sealed=True)
    if response.status >= 500 or response.status in (412, 429):
        return BackendUnavailable(f"vault failed {what} (HTTP {response.status})")
    return None
