"""A logged-in Vault client for the keys service: login, token renewal, re-login.

The keys service must keep a valid Vault token for as long as it runs, without an operator:

- It logs in with the configured method (``token``, ``approle`` or ``kubernetes``) at start, and
  a failure stops the start with a message that names what to fix (a file, a setting, the role),
  never the secret itself.
- A background task renews the token when two thirds of its TTL have passed, so a slow or
  briefly unreachable Vault still leaves a third of the TTL to retry in. When renewal is refused,
  or the token is not renewable (or has reached its max TTL), the task logs in again instead.
  A token without a TTL (a root or dev token) is never renewed.
- The engine calls :meth:`VaultSession.relogin` when Vault answers 403 (the token expired or was
  revoked between renewals); concurrent callers share one login.

Talking HTTP to Vault (the client, timeouts, error text) is vault_http's job.
hvac is synchronous, so blocking work runs in this session's own small thread pool: renewal must
not queue behind a saturated engine pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .engine import BackendUnavailable
from .settings import KeysSettings
from .vault_http import (
    VaultResponse,
    call_vault,
    new_vault_client,
    outage,
    safe_reason,
    without_retries,
)

__all__ = ["VaultSession"]

_LOG = logging.getLogger("medrelay.keys.vault")

#: Renew when this fraction of the TTL has passed; the rest is the margin for retries.
RENEW_FRACTION = 2 / 3
#: A renewal that returns less than this fraction of the login's TTL means the token is near
#: its max TTL: log in again next time instead of renewing a token that is about to die.
_CAPPED_FRACTION = 0.5
#: Backoff after a failed renewal or login in the background task (doubles up to the cap).
_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 30.0
#: Never schedule the next renewal sooner than this, so a tiny TTL cannot spin the task.
_MIN_SLEEP_SECONDS = 0.2


@dataclass(frozen=True)
class _Lease:
    """What Vault said about the current token, and when (monotonic clock)."""

    ttl: float
    renewable: bool
    obtained: float

    @property
    def expires(self) -> bool:
        return self.ttl > 0

    @property
    def renew_at(self) -> float:
        return self.obtained + self.ttl * RENEW_FRACTION

    @property
    def expires_at(self) -> float:
        return self.obtained + self.ttl


def _read_secret_file(path: Path, what: str, variable: str) -> str:
    """The stripped content of a credential file; the error names the file, never the content."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot read the {what} file {path} ({variable}): {exc.strerror or 'unreadable'}"
        ) from None
    if not value:
        raise BackendUnavailable(f"the {what} file {path} ({variable}) is empty")
    return value


class _Credentials(Protocol):
    """One login method: logs the client in and reports the new token's lease."""

    @property
    def method(self) -> str: ...

    def login(self, client: Any, timeout: float) -> _Lease: ...


def _auth_lease(auth: Mapping[str, Any]) -> _Lease:
    """The lease of the token in an ``auth`` block (a login's or a renewal's answer), from now."""
    return _Lease(
        ttl=float(auth.get("lease_duration") or 0),
        renewable=bool(auth.get("renewable")),
        obtained=time.monotonic(),
    )


def _login_lease(response: VaultResponse, client: Any) -> _Lease:
    """Install the token from a login answer on the client and return its lease."""
    auth = response.body.get("auth")
    token = auth.get("client_token") if isinstance(auth, dict) else None
    if not isinstance(auth, dict) or not isinstance(token, str) or not token:
        raise BackendUnavailable("vault's login answer holds no token")
    client.token = token
    return _auth_lease(auth)


def _refused_login(response: VaultResponse, what: str, fix: str) -> BackendUnavailable:
    failure = outage(response, f"the {what} login")
    if failure is not None:
        return failure
    if response.status == 404:
        return BackendUnavailable(
            f"vault has no {what} auth method there (HTTP 404): check MEDRELAY_VAULT_AUTH_MOUNT"
        )
    reason = "; ".join(safe_reason(error) for error in response.errors) or "no reason given"
    return BackendUnavailable(
        f"vault refused the {what} login (HTTP {response.status}: {reason}): {fix}"
    )


@dataclass(frozen=True)
class _TokenCredentials:
    """A token given by the operator: from a file (re-read at every login) or VAULT_TOKEN."""

    token_file: Path | None
    method: str = "token"

    def _token(self) -> tuple[str, str]:
        if self.token_file is not None:
            source = f"MEDRELAY_VAULT_TOKEN_FILE {self.token_file}"
            return _read_secret_file(self.token_file, "token", "MEDRELAY_VAULT_TOKEN_FILE"), source
        token = os.environ.get("VAULT_TOKEN", "").strip()
        if not token:
            raise BackendUnavailable(
                "no Vault token: set MEDRELAY_VAULT_TOKEN_FILE or VAULT_TOKEN "
                "(or use MEDRELAY_VAULT_AUTH=approle or kubernetes)"
            )
        return token, "VAULT_TOKEN"

    def login(self, client: Any, timeout: float) -> _Lease:
        """Install the token and look it up: proves it works and learns its TTL."""
        token, source = self._token()
        client.token = token
        response = call_vault(client, "GET", "auth/token/lookup-self", timeout=timeout)
        if not response.ok:
            raise _refused_login(
                response, "token", f"the token from {source} is invalid, expired or revoked"
            )
        data = response.data
        return _Lease(
            ttl=float(data.get("ttl") or 0),
            renewable=bool(data.get("renewable")),
            obtained=time.monotonic(),
        )


def _mount_login(
    client: Any,
    timeout: float,
    method: str,
    mount: str,
    credentials: Mapping[str, str],
    *,
    fix: str,
) -> _Lease:
    """Log in at ``auth/<mount>/login`` with `credentials` and install the token Vault returns.

    AppRole and Kubernetes differ only in what they send and in the advice on refusal. The
    request goes without a token: the client may still hold the expired one being replaced.
    """
    client.token = ""
    response = call_vault(client, "POST", f"auth/{mount}/login", timeout=timeout, body=credentials)
    if not response.ok:
        raise _refused_login(response, f"{method} (auth/{mount})", fix)
    return _login_lease(response, client)


@dataclass(frozen=True)
class _AppRoleCredentials:
    """AppRole: role_id from MEDRELAY_VAULT_ROLE, secret_id from a file (re-read each login)."""

    role_id: str
    secret_id_file: Path
    mount: str
    method: str = "approle"

    def login(self, client: Any, timeout: float) -> _Lease:
        secret_id = _read_secret_file(
            self.secret_id_file, "AppRole secret_id", "MEDRELAY_VAULT_SECRET_ID_FILE"
        )
        return _mount_login(
            client,
            timeout,
            self.method,
            self.mount,
            {"role_id": self.role_id, "secret_id": secret_id},
            fix=(
                "check MEDRELAY_VAULT_ROLE (the role_id) and the secret_id in "
                f"{self.secret_id_file} (MEDRELAY_VAULT_SECRET_ID_FILE)"
            ),
        )


@dataclass(frozen=True)
class _KubernetesCredentials:
    """Kubernetes: the pod's service-account JWT (re-read each login: kubelet rotates it)."""

    role: str
    jwt_file: Path
    mount: str
    method: str = "kubernetes"

    def login(self, client: Any, timeout: float) -> _Lease:
        jwt = _read_secret_file(
            self.jwt_file,
            "Kubernetes service-account token",
            "MEDRELAY_VAULT_KUBERNETES_TOKEN_FILE",
        )
        return _mount_login(
            client,
            timeout,
            self.method,
            self.mount,
            {"role": self.role, "jwt": jwt},
            fix=(
                f"check that the role {self.role!r} (MEDRELAY_VAULT_ROLE) exists and binds this "
                f"pod's service account, whose token is read from {self.jwt_file}"
            ),
        )


def _credentials(settings: KeysSettings) -> _Credentials:
    """The login method of `settings`, which KeysSettings already checked is complete (the
    role, the secret_id file, the auth mount defaulting to the method's name)."""
    mount = settings.vault_auth_mount
    if settings.vault_auth == "approle":
        assert settings.vault_secret_id_file is not None  # KeysSettings.__post_init__
        return _AppRoleCredentials(settings.vault_role, settings.vault_secret_id_file, mount)
    if settings.vault_auth == "kubernetes":
        return _KubernetesCredentials(
            settings.vault_role, settings.vault_kubernetes_token_file, mount
        )
    return _TokenCredentials(settings.vault_token_file)


class VaultSession:
    """An hvac client kept logged in: login at start, renewal in the background, re-login."""

    def __init__(self, client: Any, credentials: _Credentials, timeout: float) -> None:
        without_retries(client.adapter.session)
        self._client = client
        self._credentials = credentials
        self._timeout = timeout
        self._lock = threading.Lock()
        self._generation = 0
        self._lease: _Lease | None = None
        self._login_ttl = 0.0
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vault-auth")
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    @classmethod
    def from_settings(cls, settings: KeysSettings) -> VaultSession:
        """A session for MEDRELAY_VAULT_*; nothing is sent to Vault until start()."""
        client = new_vault_client(settings)
        return cls(client, _credentials(settings), settings.vault_timeout_seconds)

    @property
    def client(self) -> Any:
        """The hvac client (RawAdapter: every call returns a requests.Response)."""
        return self._client

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def generation(self) -> int:
        """Incremented at every login; lets concurrent 403s share one re-login."""
        return self._generation

    @property
    def method(self) -> str:
        return self._credentials.method

    async def start(self) -> None:
        """Log in (BackendUnavailable if that fails) and start the renewal task."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        login = self._loop.run_in_executor(self._executor, self._login, None)
        try:
            # One request bounded by the timeout; the margin covers the thread hand-off.
            await asyncio.wait_for(login, 2 * self._timeout + 1.0)
        except TimeoutError:
            raise BackendUnavailable(
                f"vault unreachable at {self._client.adapter.base_uri}: login timed out"
            ) from None
        self._task = asyncio.create_task(self._renew_forever(), name="vault-token-renewal")

    def relogin(self, stale_generation: int | None = None) -> None:
        """Log in again now (sync, thread-safe); for the engine's retry after a 403.

        With `stale_generation` (the generation the failed request was sent with), a login that
        another thread already did since is reused instead of repeated.
        """
        self._login(stale_generation)

    async def close(self) -> None:
        """Stop renewal, the thread pool and the HTTP connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.adapter.close()

    # --- login and renewal (sync, in a worker thread) ---------------------------------------

    def _login(self, stale_generation: int | None) -> None:
        with self._lock:
            if stale_generation is not None and stale_generation != self._generation:
                return
            lease = self._credentials.login(self._client, self._timeout)
            self._install(lease)
            _LOG.info(
                "logged in to vault with %s auth (ttl %s)",
                self._credentials.method,
                f"{lease.ttl:g}s" if lease.expires else "none",
            )

    def _install(self, lease: _Lease) -> None:
        """Record a new token's lease and wake the renewal task to reschedule (lock held)."""
        self._lease = lease
        self._login_ttl = lease.ttl
        self._generation += 1
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def _refresh(self, lease: _Lease) -> None:
        """Renew the token `lease` describes, or log in again when renewal is not possible."""
        with self._lock:
            if self._lease is not lease:
                return  # a re-login happened meanwhile; the task reschedules on the new lease
            if lease.renewable:
                renewed = self._renew_self()
                if renewed is not None:
                    if renewed.ttl < self._login_ttl * _CAPPED_FRACTION:
                        # Near the max TTL: the next refresh logs in instead of renewing.
                        renewed = _Lease(renewed.ttl, False, renewed.obtained)
                    self._lease = renewed
                    _LOG.info("renewed the vault token (ttl %gs)", renewed.ttl)
                    return
            else:
                _LOG.info("the vault token is not renewable and expires soon; logging in again")
            lease = self._credentials.login(self._client, self._timeout)
            self._install(lease)
            _LOG.info("logged in to vault again with %s auth", self._credentials.method)

    def _renew_self(self) -> _Lease | None:
        """The renewed lease, or None if Vault refused (expired, revoked, not renewable)."""
        response = call_vault(
            self._client, "POST", "auth/token/renew-self", timeout=self._timeout, body={}
        )
        failure = outage(response, "token renewal")
        if failure is not None:
            raise failure
        if not response.ok:
            _LOG.warning(
                "vault refused to renew the token (HTTP %d); logging in again", response.status
            )
            return None
        auth = response.body.get("auth")
        return _auth_lease(auth) if isinstance(auth, dict) else None

    # --- the background task ----------------------------------------------------------------

    async def _renew_forever(self) -> None:
        """Sleep until 2/3 of the TTL, refresh, repeat; failures are retried with backoff."""
        assert self._loop is not None and self._wake is not None
        failures = 0
        while True:
            self._wake.clear()  # before reading the lease, so no new login goes unnoticed
            lease = self._lease
            if lease is None or not lease.expires:
                await self._sleep(None)  # no TTL: wait until a re-login installs one
                continue
            if failures:
                delay = min(_RETRY_FIRST_SECONDS * 2 ** (failures - 1), _RETRY_MAX_SECONDS)
            else:
                delay = max(lease.renew_at - time.monotonic(), _MIN_SLEEP_SECONDS)
            if await self._sleep(delay):
                failures = 0
                continue  # a re-login installed a new lease: reschedule on it
            try:
                await self._loop.run_in_executor(self._executor, self._refresh, lease)
            except BackendUnavailable as exc:
                failures += 1
                remaining = lease.expires_at - time.monotonic()
                _LOG.warning(
                    "vault token refresh failed (%s); retrying, token expires in %.0fs",
                    exc,
                    max(remaining, 0),
                )
            else:
                failures = 0

    async def _sleep(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: forever); True if woken early by a new login."""
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return False
        return True
