"""Settings of the keys service only (MEDRELAY_KEYS_* and MEDRELAY_VAULT_*).

The shared ServiceSettings says how to run a service; these say where keys live. They are
validated at startup like the rest: a wrong value stops the process with the variable's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medrelay.settings import SettingsError, positive_float, setting

BACKENDS = ("local", "vault")
VAULT_AUTH_METHODS = ("token", "approle", "kubernetes")


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _mount(value: str) -> str:
    cleaned = value.strip("/")
    if not cleaned or any(not part for part in cleaned.split("/")):
        raise ValueError("expected a mount path such as transit")
    return cleaned


#: A key-name prefix: empty, or up to 48 lowercase letters, digits, '-', '_' or '.', starting
#: with a letter or digit. Every key name is the prefix followed by ``org-<id>``, ``sign-<id>``
#: or ``blind-index``, so with this rule every name is a valid Vault Transit key name (Vault
#: allows word characters, '-' and '.', starting and ending with a word character), and it is
#: one path segment: no '/' can turn it into another Vault path.
_KEY_PREFIX = re.compile(r"(?:[a-z0-9][a-z0-9_.-]{0,47})?")


def _key_prefix(value: str) -> str:
    if not _KEY_PREFIX.fullmatch(value):
        raise ValueError(
            "expected up to 48 lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (e.g. medrelay-)"
        )
    return value


def _vault_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value.rstrip("/")


@dataclass(frozen=True)
class KeysSettings:
    """Where the keys service keeps keys, and how it reaches Vault."""

    backend: str = setting(
        "MEDRELAY_KEYS_BACKEND",
        "local (keys in PostgreSQL under a master key file) or vault (HashiCorp Vault Transit).",
        _choice(BACKENDS),
        default="local",
    )
    master_key_file: Path = setting(
        "MEDRELAY_KEYS_MASTER_KEY_FILE",
        "local backend: 32-byte master key, created with 0600 permissions on first start.",
        Path,
        default=Path(".medrelay/keys-master.key"),
    )
    key_prefix: str = setting(
        "MEDRELAY_KEYS_KEY_PREFIX",
        "Prefix of every key name medrelay creates, so one Vault can serve several deployments.",
        _key_prefix,
        default="medrelay-",
    )
    vault_addr: str = setting(
        "MEDRELAY_VAULT_ADDR",
        "vault backend: Vault's URL, e.g. https://vault.vault.svc:8200.",
        _vault_url,
        default="",
    )
    vault_ca_cert: Path | None = setting(
        "MEDRELAY_VAULT_CACERT",
        "vault backend: CA bundle for Vault's TLS certificate (default: the system's).",
        Path,
        default=None,
    )
    vault_namespace: str = setting(
        "MEDRELAY_VAULT_NAMESPACE",
        "vault backend: Vault Enterprise namespace, if any.",
        default="",
    )
    vault_transit_mount: str = setting(
        "MEDRELAY_VAULT_TRANSIT_MOUNT",
        "vault backend: mount path of the Transit secrets engine.",
        _mount,
        default="transit",
    )
    vault_auth: str = setting(
        "MEDRELAY_VAULT_AUTH",
        "vault backend: token, approle or kubernetes.",
        _choice(VAULT_AUTH_METHODS),
        default="kubernetes",
    )
    vault_auth_mount: str = setting(
        "MEDRELAY_VAULT_AUTH_MOUNT",
        "vault backend: mount path of the auth method (default: approle or kubernetes).",
        _mount,
        default="",
    )
    vault_token_file: Path | None = setting(
        "MEDRELAY_VAULT_TOKEN_FILE",
        "vault backend, token auth: file holding the token (else VAULT_TOKEN).",
        Path,
        default=None,
    )
    vault_role: str = setting(
        "MEDRELAY_VAULT_ROLE",
        "vault backend: the Kubernetes auth role, or the AppRole role_id.",
        default="",
    )
    vault_secret_id_file: Path | None = setting(
        "MEDRELAY_VAULT_SECRET_ID_FILE",
        "vault backend, approle auth: file holding the secret_id.",
        Path,
        default=None,
    )
    vault_kubernetes_token_file: Path = setting(
        "MEDRELAY_VAULT_KUBERNETES_TOKEN_FILE",
        "vault backend, kubernetes auth: the service account token.",
        Path,
        default=Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
    )
    vault_timeout_seconds: float = setting(
        "MEDRELAY_VAULT_TIMEOUT_SECONDS",
        "vault backend: how long one Vault request may take before the call fails UNAVAILABLE.",
        positive_float,
        default=5.0,
    )

    def __post_init__(self) -> None:
        if self.backend != "vault":
            return
        if not self.vault_addr:
            raise SettingsError("MEDRELAY_VAULT_ADDR: required with MEDRELAY_KEYS_BACKEND=vault")
        if self.vault_auth in {"approle", "kubernetes"} and not self.vault_role:
            raise SettingsError(
                f"MEDRELAY_VAULT_ROLE: required with MEDRELAY_VAULT_AUTH={self.vault_auth}"
            )
        if self.vault_auth == "approle" and self.vault_secret_id_file is None:
            raise SettingsError("MEDRELAY_VAULT_SECRET_ID_FILE: required with approle auth")
        if not self.vault_auth_mount:
            default_mount = "token" if self.vault_auth == "token" else self.vault_auth
            object.__setattr__(self, "vault_auth_mount", default_mount)
